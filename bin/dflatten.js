#!/usr/bin/env -S MALLOC_MMAP_THRESHOLD_=131072 node --max-semi-space-size=2 --optimize-for-size
// The CLI lives in the compiled library (npm run build); this file only starts it.
// A small young generation and a heap that grows reluctantly keep the resident size near what
// is live: dflatten makes a lot of short-lived garbage (a JSON line and a path per entry) and
// holds little. The fixed mmap threshold makes glibc give each large buffer (stream chunks,
// compression blocks: a megabyte each) back to the system when it is freed; by default glibc
// raises the threshold after the first such free and keeps later ones in its arenas, which
// held as much again as the heap once a run had passed its peak.
import { main } from '../dist/src/cli/main.js'

process.exitCode = await main(process.argv.slice(2))
