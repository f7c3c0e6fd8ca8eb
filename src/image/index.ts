// The image store: writes and reads checkpoint images (docs/image-format.md).
export { ImageError, type ImageErrorCode } from '../errors.js';
export { writeImage, type WriteOptions, type WriteResult } from './write.js';
export { readImage, verifyStored, listImages, latestImage, inspectImage, verifyImage, type ImageSummary, type ReadOptions, type ReadResult, type Verified } from './read.js';
export { writeExport, openExport, EXPORT_MODE } from './export.js';
export type { ImageRef } from './manifest.js';
export { CODECS, FORMAT_VERSION, MAGIC, defaultChunkSize, type Codec } from './format.js';
export type { Manifest } from './schema.js';
export { generations } from './manifest.js';
