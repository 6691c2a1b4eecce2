// What dflatten computes from, or reads out of, the daemon's words: chain ids, docker load's
// output, the base's share of the history, the nearest tagged ancestor.
import t from 'tap'
import { parseLoadOutput, type ImageInspect } from '../../src/docker.js'
import { chainIds } from '../../src/docker-store.js'
import { baseHistory } from '../../src/methods/save/index.js'
import { nearestTaggedAncestor } from '../../src/stages/resolve.js'

const A = 'sha256:' + 'a'.repeat(64)
const B = 'sha256:' + 'b'.repeat(64)
const C = 'sha256:' + 'c'.repeat(64)

t.test('chain ids: the first is the diff id, each next hashes "<previous> <diff id>"', async (t) => {
  t.same(chainIds([]), [])
  t.same(chainIds([A]), [A])
  // Worked out apart from dflatten (sha256 of the text "<chain id> <diff id>").
  t.same(chainIds([A, B, C]), [
    A,
    'sha256:ccd722928bd92476ba1745586fed6e45a102504185ad88cd89e01ff116fd146c',
    'sha256:c1377126441fb2f5ec2c21ae2a60255331d639e830f0ee1b40a36e52d4c40588',
  ])
  t.not(chainIds([B, A])[1], chainIds([A, B])[1], 'the order of the layers matters')
})

t.test('docker load output: every tag and id it names, nothing else', async (t) => {
  const id = 'sha256:' + '0123456789abcdef'.repeat(4)
  t.same(parseLoadOutput(''), { tags: [], ids: [] })
  t.same(parseLoadOutput('Loaded image: a:1\nLoaded image: host:5000/b/c:2\n'), { tags: ['a:1', 'host:5000/b/c:2'], ids: [] })
  t.same(parseLoadOutput(`  Loaded image ID: ${id}  \r\n`), { tags: [], ids: [id] }, 'surrounding blanks and CRLF')
  t.same(parseLoadOutput('Loaded image ID: sha256:abc\nloaded image: x:1\nThe image a:1 already exists, renaming the old one'), { tags: [], ids: [] }, 'look-alikes')
  t.same(parseLoadOutput(`Loading layer 1.2MB/1.2MB\nLoaded image: x:1\nLoaded image ID: ${id}`), { tags: ['x:1'], ids: [id] }, 'progress lines around it')
})

// History entries: L has a layer, E is metadata only (ENV, CMD...).
interface History {
  created_by: string
  empty_layer?: boolean
}
const L = (n: number): History => ({ created_by: `RUN ${n}` })
const E = (n: number): History => ({ created_by: `ENV ${n}`, empty_layer: true })

t.test("the base's history: its own length when that covers its layers", async (t) => {
  const h = [L(0), E(1), L(2), E(3), L(4)]
  t.same(baseHistory(h, 2, 1), [L(0), E(1)], 'trailing metadata of the base stays with it')
  t.same(baseHistory(h, 4, 2), [L(0), E(1), L(2), E(3)])
  t.same(baseHistory(h, 5, 3), h, 'the whole history')
  t.same(baseHistory(h, 0, 0), [])
})

t.test("the base's history: cut after its k-th layer when the image was not built on it", async (t) => {
  const h = [L(0), E(1), L(2), E(3), L(4)]
  t.same(baseHistory(h, 3, 1), [L(0)], 'the first 3 entries hold 2 layers, not 1')
  t.same(baseHistory(h, 9, 2), [L(0), E(1), L(2)], 'the base claims more entries than the image has')
  t.same(baseHistory(h, 1, 0), [], 'scratch')
  t.same(baseHistory([E(0), E(1), L(2)], 1, 1), [E(0), E(1), L(2)], 'leading metadata entries come along')
})

function img(id: string, tags: string[] | null, layers: string[] | undefined): ImageInspect {
  return {
    Id: id,
    RepoTags: tags,
    RepoDigests: [],
    Created: '',
    Size: 0,
    Os: 'linux',
    Architecture: 'amd64',
    Config: null,
    GraphDriver: { Name: 'overlay2', Data: null },
    RootFS: { Type: 'layers', Layers: layers },
  }
}

t.test('the nearest tagged ancestor: the longest layer prefix', async (t) => {
  const source = img('s', ['app:1'], ['a', 'b', 'c'])
  t.equal(nearestTaggedAncestor(source, [img('x', ['os:1'], ['a']), img('y', ['rt:1'], ['a', 'b'])])?.Id, 'y')
  t.equal(nearestTaggedAncestor(source, [img('x', ['os:1'], ['a', 'b', 'c', 'd'])]), null, 'an image with more layers is a child, not a base')
  t.equal(nearestTaggedAncestor(source, [img('x', ['os:1'], ['b'])]), null, 'a shared layer that is not a prefix')
  t.equal(nearestTaggedAncestor(source, [img('x', ['os:1'], [])]), null, 'an image with no layers is never a base')
  t.equal(nearestTaggedAncestor(source, [img('x', ['os:1'], undefined)]), null, 'nor one whose inspect lists none')
  t.equal(nearestTaggedAncestor(source, []), null)
  t.equal(nearestTaggedAncestor(source, [source]), null, 'the image is not its own ancestor')
  t.equal(nearestTaggedAncestor(source, [img('w', ['twin:1'], ['a', 'b', 'c'])])?.Id, 'w', 'same layers, other metadata: nothing above the base')
})

t.test('the nearest tagged ancestor: ties go to the first name, whatever the order given', async (t) => {
  const source = img('s', ['app:1'], ['a', 'b'])
  const one = img('m', ['zeta:1', 'alpha:1'], ['a'])
  const two = img('n', ['beta:1'], ['a'])
  t.equal(nearestTaggedAncestor(source, [one, two])?.Id, 'm', 'alpha:1 is its first name in order')
  t.equal(nearestTaggedAncestor(source, [two, one])?.Id, 'm')
  t.equal(nearestTaggedAncestor(source, [img('q', null, ['a']), img('p', null, ['a'])])?.Id, 'p', 'untagged: by id')
})
