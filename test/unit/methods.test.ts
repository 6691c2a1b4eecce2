// The method registry, without a daemon: names, auto's choice and its reasons, refusals, and
// the settings that change the cache marker.
import t from 'tap'
import { allMethods, getMethod, methodNames, pickMethod } from '../../src/methods/index.js'
import { isDflattenError } from '../../src/errors.js'
import type { DaemonInfo, ImageInspect } from '../../src/docker.js'

const source = { Id: 'sha256:' + 'a'.repeat(64), GraphDriver: { Name: 'vfs', Data: null }, RootFS: { Type: 'layers', Layers: [] } } as unknown as ImageInspect
const info: DaemonInfo = { driver: 'vfs', dockerRoot: '/var/lib/docker', serverVersion: '20.10', containerdStore: false, remote: false }

t.test('the registry', async (t) => {
  t.same(methodNames(), ['overlay', 'overlay-copy', 'snapshots', 'save', 'registry'])
  t.equal(getMethod('save').name, 'save')
  t.ok(allMethods().every((m) => m.summary.length > 0 && !m.summary.includes('\n')), 'every method has a one-line summary')
  t.throws(() => getMethod('rsync'), { code: 'usage', message: /unknown method rsync; use auto, overlay, overlay-copy, snapshots, save, registry/ })
})

t.test('auto takes the first method that can work, and says why the others cannot', async (t) => {
  const picked = await pickMethod('auto', { info, source })
  t.equal(picked.method.name, 'save')
  t.match(
    picked.reason,
    /^the overlay method cannot work: it needs the overlay2 storage driver; this daemon uses the vfs storage driver; the snapshots method cannot work: it needs the containerd image store; this daemon uses the vfs storage driver$/,
  )
})

t.test('an explicit method that cannot work is refused', async (t) => {
  const err = await pickMethod('overlay-copy', { info, source }).catch((e: unknown) => e)
  t.ok(isDflattenError(err, 'refused-driver'))
  t.match((err as Error).message, /--method overlay-copy cannot work here: it needs the overlay2 storage driver.*use --method save/)
  t.same(await pickMethod('save', { info, source }).then((p) => p.reason), 'asked for')
})

t.test('the save content setting is part of the cache marker', async (t) => {
  const save = getMethod('save')
  t.equal(save.cacheKey({}, info), 'save')
  t.equal(save.cacheKey({ saveContent: 'save' }, info), 'save, content from a second save')
  t.equal(getMethod('overlay').cacheKey({ saveContent: 'save' }, info), 'overlay')
  const leaky: DaemonInfo = { ...info, driver: 'overlay2', serverVersion: '26.1.5+dfsg1' }
  t.equal(save.cacheKey({}, leaky), 'save, content from a second save', 'where export leaks, the second save is the content: cached apart')
})
