// getfattr's dump format, as `getfattr -d -m - -e hex --absolute-names` writes it.
import t from 'tap'
import { parseGetfattr } from '../../src/xattrs.js'

const dump = (...parts: Array<string | number[]>): Buffer => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : Buffer.from(p))))

t.test('names are relative to the root, which is no entry itself', async (t) => {
  const out = dump('# file: /r\nuser.root=0x01\n\n# file: /r/a\nuser.x=0x02\n\n# file: /r/a/b\nuser.y=0x03\n\n')
  for (const root of ['/r', '/r/']) {
    const map = parseGetfattr(out, root)
    t.same([...map.keys()], ['a', 'a/b'], `root given as ${root}`)
    t.same(map.get('a/b')?.get('user.y'), Buffer.from([3]))
  }
  t.same([...parseGetfattr(dump('# file: /rx/a\nuser.x=0x02\n'), '/r').keys()], [], 'a sibling with the root as a prefix is not under it')
})

t.test('values: hex, base64, quoted text with escapes, and none', async (t) => {
  const map = parseGetfattr(dump('# file: /r/f\nuser.hex=0x00ff10\nuser.b64=0sAP8Q\nuser.text="a\\012b\\134c"\nuser.bare=plain\nuser.none\n'), '/r')
  const f = map.get('f')
  t.same(f?.get('user.hex'), Buffer.from([0x00, 0xff, 0x10]))
  t.same(f?.get('user.b64'), Buffer.from([0x00, 0xff, 0x10]))
  t.same(f?.get('user.text'), Buffer.from('a\nb\\c'))
  t.same(f?.get('user.bare'), Buffer.from('plain'))
  t.same(f?.get('user.none'), Buffer.alloc(0))
})

t.test('escaped names: newlines, spaces, backslashes and bytes that are not UTF-8', async (t) => {
  const map = parseGetfattr(dump('# file: /r/a\\012b\nuser.x=0x01\n\n# file: /r/sp\\040ace\\134\nuser.x=0x02\n\n# file: /r/', [0xff, 0xfe], '\nuser.x=0x03\n'), '/r')
  t.ok(map.has('a\nb'))
  t.ok(map.has('sp ace\\'))
  t.ok(map.has('\xff\xfe'), 'raw bytes, one char each')
  t.equal(map.size, 3)
})

t.test('a dump without a final newline, and an empty one', async (t) => {
  t.same(parseGetfattr(dump('# file: /r/f\nuser.x=0x07'), '/r').get('f')?.get('user.x'), Buffer.from([7]))
  t.equal(parseGetfattr(Buffer.alloc(0), '/r').size, 0)
})
