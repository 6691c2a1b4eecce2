// Error codes decide exit codes; nothing branches on message text.
import t from 'tap'
import { DflattenError, ERROR_CODES, Interrupted, exitCodeOf, isDflattenError } from '../../src/errors.js'

t.test('usage errors exit 2, every other code 1', async (t) => {
  for (const code of ERROR_CODES) {
    if (code === 'interrupted') continue
    t.equal(exitCodeOf(new DflattenError(code, 'x')), code === 'usage' ? 2 : 1, code)
  }
})

t.test('an interrupted run exits 128 + the signal', async (t) => {
  t.equal(exitCodeOf(new Interrupted('SIGINT')), 130)
  t.equal(exitCodeOf(new Interrupted('SIGHUP')), 129)
  t.equal(exitCodeOf(new Interrupted('SIGTERM')), 143)
  const e = new Interrupted('SIGINT')
  t.equal(e.code, 'interrupted')
  t.match(e.message, /interrupted by SIGINT/)
  t.ok(isDflattenError(e, 'interrupted'), 'an Interrupted is a DflattenError')
})

t.test('isDflattenError checks the class and, when given, the code', async (t) => {
  const e = new DflattenError('image-not-found', 'no such image: x')
  t.ok(isDflattenError(e))
  t.ok(isDflattenError(e, 'image-not-found'))
  t.notOk(isDflattenError(e, 'usage'))
  t.notOk(isDflattenError(new Error('image-not-found')), 'a plain Error, whatever its words')
  t.notOk(isDflattenError({ code: 'usage', message: 'x' }), 'a look-alike object')
  t.equal(e.name, 'DflattenError')
})

t.test('the codes are distinct', async (t) => {
  t.equal(new Set(ERROR_CODES).size, ERROR_CODES.length)
})
