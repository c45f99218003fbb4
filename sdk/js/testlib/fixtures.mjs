// Real media files made in the test, without dependencies: a PNG (the server decodes it for its size and a
// thumbnail), a WAV and an ADTS AAC recording (the server reads their duration from the container), so that
// upload tests send bytes of the kind they claim, as a phone would.
import { deflateSync } from 'node:zlib';

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'ascii');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

/** An opaque RGB PNG of `width` x `height`: a diagonal gradient in `rgb`'s hue. */
export function png(width, height, rgb = [40, 120, 220]) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // colour type: RGB
  const raw = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    const row = y * (width * 3 + 1);
    raw[row] = 0; // filter: none
    for (let x = 0; x < width; x++) {
      const shade = (x + y) / (width + height);
      for (let i = 0; i < 3; i++) raw[row + 1 + x * 3 + i] = Math.round(rgb[i] * (0.5 + shade / 2));
    }
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** A mono 8 kHz 16-bit PCM WAV of `ms` milliseconds: a 440 Hz tone. */
export function wav(ms) {
  const rate = 8000;
  const samples = Math.round((rate * ms) / 1000);
  const data = Buffer.alloc(samples * 2);
  for (let i = 0; i < samples; i++) data.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / rate)), i * 2);
  const head = Buffer.alloc(44);
  head.write('RIFF', 0, 'ascii');
  head.writeUInt32LE(36 + data.length, 4);
  head.write('WAVEfmt ', 8, 'ascii');
  head.writeUInt32LE(16, 16); // fmt chunk size
  head.writeUInt16LE(1, 20); // PCM
  head.writeUInt16LE(1, 22); // mono
  head.writeUInt32LE(rate, 24);
  head.writeUInt32LE(rate * 2, 28); // bytes per second
  head.writeUInt16LE(2, 32); // block align
  head.writeUInt16LE(16, 34); // bits per sample
  head.write('data', 36, 'ascii');
  head.writeUInt32LE(data.length, 40);
  return Buffer.concat([head, data]);
}

/** An AAC recording in ADTS framing of about `ms` milliseconds, as RecorderManager writes with `format:
 * 'aac'`: frames of 1024 samples at 44.1 kHz, mono (filler payloads: the server reads only the framing). */
export function adts(ms) {
  const frames = Math.round((ms * 44100) / 1000 / 1024);
  const payload = [0x21, 0x10, 0x04, 0x60, 0x8c, 0x1c];
  const len = 7 + payload.length;
  const frame = [0xff, 0xf1, 0x50, 0x40 | ((len >> 11) & 0x3), (len >> 3) & 0xff, ((len & 0x7) << 5) | 0x1f, 0xfc, ...payload];
  return Buffer.from(Array.from({ length: frames }, () => frame).flat());
}
