// Chunk hashes: identity in the content-addressed store and the check made on reading.
import type { ChunkHash } from './format.js';
import { sha256hex } from '../util/fs.js';
import { xxh64hex } from './xxh64.js';

export function hashChunk(alg: ChunkHash, data: Uint8Array): string {
  return alg === 'xxh64' ? xxh64hex(data) : sha256hex(data);
}
