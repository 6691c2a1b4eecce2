// Which daemons' `docker export` leaks its container's layer (moby #48516), from `docker info`
// alone: the classic store of Docker 24.0 to 27.5. The save method takes its content from a
// second save there and from the export everywhere else.
import t from 'tap'
import { engineRelease, exportLeaks } from '../../src/methods/save/export-leak.js'

const classic = (serverVersion: string) => ({ serverVersion, containerdStore: false })
const ctrd = (serverVersion: string) => ({ serverVersion, containerdStore: true })

t.test('engine releases as daemons spell them', async (t) => {
  t.same(engineRelease('26.1.5'), { major: 26, minor: 1 })
  t.same(engineRelease('26.1.5+dfsg1'), { major: 26, minor: 1 }, "Debian's")
  t.same(engineRelease('20.10.24+dfsg1'), { major: 20, minor: 10 })
  t.same(engineRelease('24.0.7-0ubuntu1~22.04.1'), { major: 24, minor: 0 }, "Ubuntu's")
  t.same(engineRelease('28.0.0-rc.1'), { major: 28, minor: 0 })
  t.same(engineRelease('v27.3.1'), { major: 27, minor: 3 })
  t.same(engineRelease('27.5'), { major: 27, minor: 5 })
  t.equal(engineRelease('dev'), null)
  t.equal(engineRelease(''), null)
  t.equal(engineRelease('26'), null)
  t.equal(engineRelease('261.5x'), null)
})

t.test('the classic store leaks from 24.0 through 27.5', async (t) => {
  for (const v of ['24.0.0', '24.0.7-0ubuntu1~22.04.1', '25.0.5', '26.0.0', '26.1.5', '26.1.5+dfsg1', '27.0.3', '27.2.1', '27.5.1']) {
    const why = exportLeaks(classic(v))
    t.ok(why, `${v} leaks`)
    t.match(why, new RegExp(`^docker export on Docker ${v.replace(/[.+~]/g, '\\$&')} with the classic image store leaves each exported container's layer mounted and on disk until the daemon restarts \\(moby #48516\\)$`))
  }
})

t.test('older and fixed releases do not', async (t) => {
  for (const v of ['1.13.1', '17.03.2-ce', '19.03.15', '20.10.24+dfsg1', '20.10.0', '23.0.6', '28.0.0', '28.0.0-rc.1', '28.5.2', '29.1.0', '100.0.0']) {
    t.equal(exportLeaks(classic(v)), null, v)
  }
})

t.test('the containerd image store never does', async (t) => {
  for (const v of ['24.0.0', '26.1.5+dfsg1', '27.5.1', '29.1.0', 'dev']) t.equal(exportLeaks(ctrd(v)), null, v)
})

t.test('an unreadable version on the classic store counts as leaking', async (t) => {
  // The second save is slower, never wrong; a leak stays until the daemon restarts.
  const why = exportLeaks(classic('dev'))
  t.match(why, /"dev"/)
  t.match(why, /moby #48516/)
})
