/**
 * Option tables and the one strict parser every command uses. Each command declares its options
 * once, in a table; the parser and the command's --help both read that table, so an option
 * cannot be accepted without being documented, or documented without being accepted.
 */
import { parseArgs } from 'node:util'
import { DflattenError } from '../errors.js'

export interface OptionSpec {
  /** The long name, without the dashes. */
  name: string
  short?: string
  type: 'string' | 'boolean'
  /** A string option that may be given more than once (its value is then a list). */
  multiple?: boolean
  /** What the value is, as --help shows it (string options only). */
  value?: string
  /** --help's text; later lines continue under the first. */
  help: string
}

export type OptionTable = readonly OptionSpec[]

type ValueOf<O extends OptionSpec> = O extends { type: 'boolean' } ? boolean : O extends { multiple: true } ? string[] : string

/** What parsing a table gives: each option by its long name, absent when not given. */
export type Values<T extends OptionTable> = { [O in T[number] as O['name']]?: ValueOf<O> }

export interface Parsed<T extends OptionTable> {
  values: Values<T>
  positionals: string[]
}

/** The column where --help's option texts start, as in the main usage text. */
const HELP_COLUMN = 26

function usageError(command: string, message: string): DflattenError {
  return new DflattenError('usage', `${message}; see '${command} --help'`)
}

function display(o: OptionSpec): string {
  return o.short ? `-${o.short}, --${o.name}` : `--${o.name}`
}

/**
 * Parse argv against a table, strictly: an option the table lacks, a string option without its
 * value (or with one that looks like another option), a boolean option given a value: each is a
 * usage error that names it. `command` ('dflatten resolve') is how the message refers the user
 * to the help. Positional arguments are returned as they are; the command counts them.
 */
export function parseOptions<T extends OptionTable>(table: T, argv: string[], command: string): Parsed<T> {
  const config = Object.fromEntries(
    table.map((o) => [o.name, { type: o.type, ...(o.short ? { short: o.short } : {}), ...(o.multiple ? { multiple: true } : {}) }]),
  )
  // Non-strict, with tokens, so each problem gets a message of ours; every token is checked below.
  const { tokens } = parseArgs({ args: argv, options: config, strict: false, allowPositionals: true, tokens: true })
  const values: Record<string, string | boolean | string[]> = {}
  const positionals: string[] = []
  for (const token of tokens) {
    if (token.kind === 'positional') positionals.push(token.value)
    if (token.kind !== 'option') continue
    // parseArgs names an unknown option by what was typed, so only a table row matches both ways.
    const spec = table.find((o) => o.name === token.name && (token.rawName === `--${o.name}` || token.rawName === `-${o.short}`))
    if (!spec) throw usageError(command, `unknown option ${token.rawName}`)
    if (spec.type === 'boolean') {
      if (token.value !== undefined) throw usageError(command, `${display(spec)} takes no value`)
      values[spec.name] = true
      continue
    }
    const value = token.value
    if (value === undefined || value === '') throw usageError(command, `${display(spec)} needs a value (${spec.value ?? 'a value'})`)
    // `-t --json` would take '--json' as the tag; a value that starts with a dash must be attached.
    if (!token.inlineValue && value.length > 1 && value.startsWith('-')) {
      throw usageError(command, `${display(spec)} needs a value (${spec.value ?? 'a value'}), not the option ${value}; write --${spec.name}=${value} if that is the value`)
    }
    if (spec.multiple) values[spec.name] = [...((values[spec.name] as string[] | undefined) ?? []), value]
    else values[spec.name] = value
  }
  return { values: values as Values<T>, positionals }
}

/** Refuse positional arguments beyond `max` (what the command takes is `what`). */
export function atMost(positionals: string[], max: number, command: string, what: string): void {
  if (positionals.length <= max) return
  const extra = positionals.slice(max).map((p) => JSON.stringify(p)).join(' ')
  throw usageError(command, `${command} takes ${what}; unexpected argument${positionals.length - max > 1 ? 's' : ''} ${extra}`)
}

/** The Options: block of --help, one entry per table row, in table order. */
export function optionHelp(table: OptionTable): string {
  const lines: string[] = []
  for (const o of table) {
    const head = `  ${o.short ? `-${o.short}, ` : '    '}--${o.name}${o.type === 'string' && o.value ? ` ${o.value}` : ''}`
    const [first, ...rest] = o.help.split('\n')
    lines.push(head.length < HELP_COLUMN - 1 ? `${head.padEnd(HELP_COLUMN)}${first}` : `${head}\n${' '.repeat(HELP_COLUMN)}${first}`)
    for (const line of rest) lines.push(`${' '.repeat(HELP_COLUMN)}${line}`)
  }
  return lines.join('\n')
}

/** A command's whole --help: what comes before the options, the options, what comes after. */
export function helpText(table: OptionTable, before: string, after?: string): string {
  return [before, '', 'Options:', optionHelp(table), ...(after ? ['', after] : [])].join('\n')
}

export const HELP_OPTION = { name: 'help', short: 'h', type: 'boolean', help: 'show this help' } as const satisfies OptionSpec
