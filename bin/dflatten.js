#!/usr/bin/env -S node --max-semi-space-size=2
// The CLI lives in the compiled library (npm run build); this file only starts it.
// A small young generation keeps the resident size near what is live: dflatten makes a lot of
// short-lived garbage (a JSON line and a path per entry) and holds little.
import { main } from '../dist/src/cli.js'

process.exitCode = await main(process.argv.slice(2))
