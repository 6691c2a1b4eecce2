#!/usr/bin/env node
// The CLI lives in the compiled library (npm run build); this file only starts it.
import { main } from '../dist/src/cli.js'

process.exitCode = await main(process.argv.slice(2))
