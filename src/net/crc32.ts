/**
 * CRC-32 (IEEE 802.3, the zlib/PNG polynomial), table-driven. Frames carry it to catch corruption and
 * framing bugs (a body split or joined wrongly), not to authenticate: the connection is already encrypted
 * and authenticated by Noise / DTLS, so a keyed hash would add nothing, and CRC-32 is several times faster
 * than SHA-256 in pure JS (no WebCrypto await per frame, same code in browser and Node).
 */
const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** Continues a running CRC (start with 0) over `bytes`; returns the unsigned 32-bit value. */
export function crc32(bytes: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < bytes.length; i++) c = TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}
