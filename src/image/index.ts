// The image store: writes and reads checkpoint images (docs/image-format.md).
export { ImageError, type ImageErrorCode } from '../errors.js';
export { writeImage, type WriteOptions, type WriteResult } from './write.js';
export { readImage, listImages, latestImage, inspectImage, type ImageSummary, type ReadOptions, type ReadResult } from './read.js';
export type { ImageRef } from './manifest.js';
export { CODECS, FORMAT_VERSION, MAGIC, defaultChunkSize, type Codec } from './format.js';
export type { Manifest } from './schema.js';
export { generations } from './manifest.js';
