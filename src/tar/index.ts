/** The tar format, both ways: header encoding for the layers we write, one parser for what we read. */
export { BLOCK, END_OF_ARCHIVE, ZERO_BLOCK, TYPE, padding, isZeroBlock, type TarHeader } from './format.js'
export { encodeTarHeader } from './encode.js'
export { TarParser, type TarSink } from './parser.js'
export { readTar, type TarEntry } from './reader.js'
export { cleanMemberName } from './names.js'
export { parsePax } from './pax.js'
