#!/usr/bin/env -S node --max-semi-space-size=2 --optimize-for-size
// The CLI lives in the compiled library (npm run build); this file only starts it.
// A small young generation and a heap that grows reluctantly keep the resident size near what
// is live: dflatten makes a lot of short-lived garbage (a JSON line and a path per entry) and
// holds little.
import { main } from '../dist/src/cli/main.js'

process.exitCode = await main(process.argv.slice(2))
