// The runner's side of a mini-program process (lib/client.js): commands over IPC, and its events to wait for.
'use strict';

const { fork } = require('node:child_process');
const path = require('node:path');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

class Client {
  constructor(name, child) {
    this.name = name;
    this.child = child;
    this.events = [];
    this.waiters = [];
    this.pending = new Map();
    this.nextId = 1;
    this.uncaught = [];
    child.on('message', (msg) => {
      if (msg.id) {
        this.pending.get(msg.id)(msg.reply);
        this.pending.delete(msg.id);
        return;
      }
      if (msg.ev === 'uncaught') this.uncaught.push(msg.error);
      this.events.push(msg);
      this.waiters = this.waiters.filter((w) => !w());
    });
  }

  static async spawn(name, pkg, base, prefix, wechat, openid) {
    const child = fork(path.join(__dirname, 'client.js'), [pkg, base, prefix, wechat, openid, name], { stdio: 'inherit' });
    const client = new Client(name, child);
    await client.next((e) => e.ev === 'ready', 10000);
    return client;
  }

  cmd(cmd, args) {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.child.send({ id, cmd, args });
    });
  }

  /** Waits for the first event after `from` (an index into this.events) that matches. */
  next(match, timeoutMs = 10000, from = 0) {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.events.slice(from).find(match);
        if (found) {
          resolve(found);
          return true;
        }
        return false;
      };
      if (check()) return;
      const timer = setTimeout(() => {
        reject(new Error(`${this.name}: timed out; events so far: ${JSON.stringify(this.events.slice(from))}`));
      }, timeoutMs);
      this.waiters.push(() => {
        if (check()) {
          clearTimeout(timer);
          return true;
        }
        return false;
      });
    });
  }

  mark() {
    return this.events.length;
  }

  kill() {
    this.child.kill();
  }
}

const people = (name, change) => (e) => e.ev === 'people' && e.content[change] && e.content[change].nickName === name;
const spoke = (name, word) => (e) => e.ev === 'speak' && e.content.who.nickName === name && e.content.word === word;

module.exports = { Client, sleep, people, spoke };
