import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import { dotString, toDot } from '../src/viz/dot.js';
import { humanSize, shortDigest } from '../src/viz/format.js';
import { buildGraph, layerNodeId, resolveImages, type ImageGraph, type ImageOutcome } from '../src/viz/graph.js';
import { MAX_GRAPH_EDGES, MAX_GRAPH_NODES, VizLimitError } from '../src/viz/limits.js';
import { MAX_IMAGES, TooManyImagesError, parseImageList } from '../src/viz/references.js';
import renderSvg from '../src/viz/render-worker.js';
import type { ImageGraphSource, ResolvedImage } from '../src/viz/source.js';
import { launchBrowser } from './support/browser.js';
import { request, registryError } from './support/http.js';
import { startKontain, type TestServer } from './support/kontain.js';
import { layoutDir, pushOciLayout, tarLayer, writeOciLayout, type WrittenLayout } from './support/upstream-images.js';
import { startUpstreamRegistry, type UpstreamRegistry } from './support/upstream-registry.js';

const AMD64 = { os: 'linux', architecture: 'amd64' };
const digest = (c: string) => `sha256:${c.repeat(64)}`;
const layerId = (d: string) => `layer-${d.replace(':', '-')}`;
const outcome = (reference: string, digests: string[]): ImageOutcome => ({
  reference,
  image: { reference, digest: digest('f'), layers: digests.map((d) => ({ digest: d, size: 1 })), totalSize: digests.length },
});

/** Edges pointing at a node, by their tails. */
const incoming = (graph: ImageGraph, id: string) => graph.edges.filter((e) => e.to === id).map((e) => e.from).sort();

/** A source with canned images; anything else fails as an upstream would. */
function fakeSource(images: Record<string, Array<[string, number]>>): ImageGraphSource & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    async resolve(reference): Promise<ResolvedImage> {
      calls.push(reference);
      const layers = images[reference];
      if (!layers) throw new Error(`upstream example.test answered 404 to HEAD manifest ${reference}: not found`);
      const list = layers.map(([d, size]) => ({ digest: d, size }));
      return { reference, digest: digest('f'), layers: list, totalSize: list.reduce((s, l) => s + l.size, 0) };
    },
  };
}

describe('image lists', () => {
  test('one per line, comments and blanks ignored, duplicates dropped (also when spelled differently)', () => {
    const text = '# a comment\n\nbusybox   # the small one\n  alpine\r\ndocker.io/library/busybox:latest\nalpine\n#busybox\nnot a ref!\n';
    assert.deepEqual(parseImageList(text), ['busybox', 'alpine', 'not a ref!']);
    assert.deepEqual(parseImageList(['a', 'b\nc', 'a']), ['a', 'b', 'c']);
  });

  test(`more than ${MAX_IMAGES} images is refused`, () => {
    const many = Array.from({ length: MAX_IMAGES + 1 }, (_, i) => `img${i}`);
    assert.equal(parseImageList(many.slice(0, MAX_IMAGES)).length, MAX_IMAGES);
    assert.throws(() => parseImageList(many), (err: unknown) => err instanceof TooManyImagesError && /at most 20 images.*21 were given/.test(err.message));
    // Duplicates and comments do not count against the limit.
    assert.equal(parseImageList([...many.slice(0, MAX_IMAGES), 'img0', '# img99']).length, MAX_IMAGES);
  });

  test('sizes and digests as people read them', () => {
    assert.equal(humanSize(0), '0 B');
    assert.equal(humanSize(999), '999 B');
    assert.equal(humanSize(1000), '1.00 kB');
    assert.equal(humanSize(12_345), '12.3 kB');
    assert.equal(humanSize(999_999), '1.00 MB');
    assert.equal(humanSize(3_210_000_000), '3.21 GB');
    assert.equal(shortDigest(digest('a')), 'aaaaaaaaaaaa');
  });
});

describe('graph building', () => {
  const base = digest('b');
  const one = digest('1');
  const two = digest('2');
  const solo = digest('5');

  test('a shared layer appears once, with an edge from each layer on it; failures are reported, the rest drawn', async () => {
    const source = fakeSource({ 'app-one': [[base, 1000], [one, 10]], 'app-two': [[base, 1000], [two, 20]], other: [[solo, 5]] });
    const outcomes = await resolveImages(source, ['app-one', 'missing:tag', 'app-two', 'other'], AMD64);
    const graph = buildGraph(outcomes, AMD64);

    assert.equal(graph.platform, 'linux/amd64');
    assert.deepEqual(graph.errors, [{ reference: 'missing:tag', error: 'upstream example.test answered 404 to HEAD manifest missing:tag: not found' }]);
    assert.deepEqual(graph.images.map((i) => [i.reference, i.node, i.totalSize]), [['app-one', 'image-1', 1010], ['app-two', 'image-2', 1020], ['other', 'image-3', 5]]);

    const layers = graph.nodes.filter((n) => n.kind === 'layer');
    assert.deepEqual(layers.map((n) => n.digest), [base, one, two, solo], 'one node per distinct layer');
    const shared = layers.find((n) => n.digest === base)!;
    assert.deepEqual(shared.images, ['app-one', 'app-two']);
    assert.equal(shared.label, 'bbbbbbbbbbbb\n1.00 kB');
    assert.deepEqual(incoming(graph, layerId(base)), [layerId(one), layerId(two)]);
    assert.deepEqual(incoming(graph, 'scratch'), [layerId(base), layerId(solo)].sort(), 'bottom layers sit on scratch, once each');
    assert.deepEqual(incoming(graph, layerId(one)), ['image-1'], 'each image is linked to its top layer');
    assert.equal(graph.nodes.find((n) => n.id === 'image-2')!.label, 'app-two\n1.02 kB, 2 layers');
    assert.equal(graph.nodes.filter((n) => n.kind === 'scratch').length, 1);
    assert.equal(graph.distinctLayerSize, 1035);
    assert.equal(new Set(graph.edges.map((e) => `${e.from} ${e.to}`)).size, graph.edges.length, 'no duplicate edges');
  });

  test('digests that differ only in separators get distinct ids, each a function of its digest alone', () => {
    // Before, separators were all stripped to `-`, and each collision got one more `-`
    // appended (in a quadratic loop): ids depended on which digests came first.
    const colliding = ['sha256:ab-c', 'sha256:ab_c', 'sha256:ab=c', 'sha256:ab--c', 'sha256-ab:c', 'sha256:ab-_c'];
    const forward = buildGraph([outcome('one', colliding)], AMD64);
    const backward = buildGraph([outcome('one', [...colliding].reverse())], AMD64);
    const ids = (graph: ImageGraph) => new Map(graph.nodes.filter((n) => n.kind === 'layer').map((n) => [n.digest!, n.id]));
    assert.equal(new Set(ids(forward).values()).size, colliding.length, 'one id per digest');
    assert.deepEqual(ids(backward), ids(forward), 'the same id whatever the order');
    for (const d of colliding) assert.equal(ids(forward).get(d), layerNodeId(d));
    assert.equal(layerNodeId('sha256:ab-c'), 'layer-sha256-ab_2dc');
    assert.equal(layerNodeId(digest('a')), layerId(digest('a')), 'a sha256 digest reads as before: layer-sha256-<hex>');
    for (const id of ids(forward).values()) assert.match(id, /^layer-[A-Za-z0-9_-]+$/, 'safe as an SVG id; no `:` (edge ids use it)');
  });

  test(`more than ${MAX_GRAPH_NODES} nodes or ${MAX_GRAPH_EDGES} edges is refused, naming the limit`, () => {
    const many = Array.from({ length: 20_000 }, (_, i) => `sha256:${i.toString(16).padStart(64, '0')}`);
    assert.throws(() => buildGraph([outcome('huge', many)], AMD64), (err: unknown) => err instanceof VizLimitError && err.message === `the graph would have more than ${MAX_GRAPH_NODES} nodes (images and distinct layers); viz draws at most ${MAX_GRAPH_NODES}: draw fewer images`);
    // 50 layers, every one on top of every other: few nodes, but 2,500 distinct edges.
    const pool = many.slice(0, 50);
    const tangled = pool.flatMap((upper) => pool.flatMap((lower) => [lower, upper]));
    assert.throws(() => buildGraph([outcome('tangled', tangled)], AMD64), (err: unknown) => err instanceof VizLimitError && /more than 2000 edges; viz draws at most 2000/.test(err.message));
    // At the limits it is drawn.
    assert.equal(buildGraph([outcome('fits', many.slice(0, MAX_GRAPH_NODES - 2))], AMD64).nodes.length, MAX_GRAPH_NODES);
  });

  test('a registry that does not answer costs one image, not the page', async () => {
    const slow: ImageGraphSource = { resolve: (ref) => (ref === 'slow' ? new Promise(() => {}) : fakeSource({ fast: [[one, 1]] }).resolve(ref, AMD64)) };
    const graph = buildGraph(await resolveImages(slow, ['slow', 'fast'], AMD64, { timeoutMs: 50 }), AMD64);
    assert.deepEqual(graph.images.map((i) => i.reference), ['fast']);
    assert.match(graph.errors[0]!.error, /slow did not resolve within 0.05 s/);
  });

  test('no more than `concurrency` resolutions at once', async () => {
    let active = 0;
    let peak = 0;
    const source: ImageGraphSource = {
      async resolve(reference) {
        active++;
        peak = Math.max(peak, active);
        await new Promise((r) => setTimeout(r, 5));
        active--;
        return { reference, digest: digest('f'), layers: [], totalSize: 0 };
      },
    };
    const outcomes = await resolveImages(source, Array.from({ length: 10 }, (_, i) => `i${i}`), AMD64, { concurrency: 3 });
    assert.equal(outcomes.length, 10);
    assert.equal(peak, 3);
  });
});

describe('DOT', () => {
  test('strings are quoted and escaped: quotes, backslashes, entities, newlines, control characters', () => {
    assert.equal(dotString('plain'), '"plain"');
    assert.equal(dotString('say "hi"'), '"say \\"hi\\""');
    assert.equal(dotString('a\\b\\'), '"a\\\\b\\\\"');
    assert.equal(dotString('x & y &amp;'), '"x &amp; y &amp;amp;"');
    assert.equal(dotString('one\ntwo\r\nthree'), '"one\\ntwo\\nthree"');
    assert.equal(dotString('nul\x00bell\x07'), '"nulbell"');
  });

  test('Graphviz shows hostile text literally and the graph stays one graph', async () => {
    const nasty = 'evil" -> "scratch"; x [label="owned\\N &lt;b&gt; </text><script>';
    const graph = buildGraph([{ reference: nasty, image: { reference: nasty, digest: digest('e'), layers: [{ digest: digest('1'), size: 1 }], totalSize: 1 } }], AMD64);
    const svg = await renderSvg(toDot(graph));
    const texts = [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) =>
      m[1]!.replace(/&quot;/g, '"').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&#45;/g, '-').replace(/&amp;/g, '&'),
    );
    assert.ok(texts.includes(nasty), `label shown literally; texts: ${JSON.stringify(texts)}`);
    assert.ok(!svg.includes('<script'), 'no markup gets through');
    assert.equal((svg.match(/class="node/g) ?? []).length, 3, 'image, layer, scratch: no node injected');
    assert.equal((svg.match(/class="edge/g) ?? []).length, 2, 'no edge injected');
  });

  test('graph.svg lists what it could not draw', async () => {
    const graph = buildGraph([{ reference: 'gone', error: 'upstream x answered 404' }], AMD64);
    assert.doesNotMatch(toDot(graph), /Not drawn/);
    assert.match(await renderSvg(toDot(graph, { errorsInLabel: true })), /gone: upstream x answered 404/);
  });
});

describe('the viz host', () => {
  let upstream: UpstreamRegistry;
  let server: TestServer;
  let appOne: WrittenLayout;
  let appTwo: WrittenLayout;
  let other: WrittenLayout;
  let multi: WrittenLayout;
  let browser: Browser | undefined;
  const ref = (name: string) => `${upstream.host}/viz/${name}:v1`;
  const longRef = () => `${upstream.host}/viz/a-long-repository-name-to-check-that-labels/fit-inside-their-boxes:version-1.2.3-with-a-long-tag`;

  before(async () => {
    upstream = await startUpstreamRegistry();
    // Random contents, so the layers have sizes worth drawing and no digest repeats across runs' expectations.
    const baseLayer = await tarLayer({ 'etc/os-release': 'ID=test\n', 'lib/libbase.so': randomBytes(300_000) });
    appOne = await writeOciLayout(await layoutDir(), 'v1', [{ layers: [baseLayer, await tarLayer({ 'app/one': randomBytes(40_000) })] }]);
    appTwo = await writeOciLayout(await layoutDir(), 'v1', [{ layers: [baseLayer, await tarLayer({ 'app/two': randomBytes(70_000) })] }]);
    other = await writeOciLayout(await layoutDir(), 'v1', [{ layers: [await tarLayer({ 'bin/other': randomBytes(120_000) })] }]);
    multi = await writeOciLayout(await layoutDir(), 'v1', [
      { layers: [await tarLayer({ arch: 'amd64\n' })], platform: { os: 'linux', architecture: 'amd64' } },
      { layers: [await tarLayer({ arch: 'arm64\n' })], platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
    ]);
    for (const [name, layout] of Object.entries({ 'app-one': appOne, 'app-two': appTwo, other, multi })) await pushOciLayout(layout, ref(name));
    await pushOciLayout(other, longRef());
    server = await startKontain({ KONTAIN_INSECURE_REGISTRIES: upstream.host, KONTAIN_DOMAIN: 'kontain.test' });
  });
  after(async () => {
    await browser?.close();
    await server?.stop();
    await upstream?.stop();
  });

  const graphJson = async (query: string) => {
    const res = await request(`${server.url}/viz/graph.json?${query}`);
    assert.equal(res.status, 200, res.body.toString());
    assert.match(String(res.headers['content-type']), /^application\/json/);
    return JSON.parse(res.body.toString()) as ImageGraph;
  };

  test('graph.json: shared base once, sizes from the manifests, a missing image in errors[]', async () => {
    const q = new URLSearchParams([['image', ref('app-one')], ['image', ref('app-two')], ['image', ref('nope')], ['image', ref('other')]]);
    const graph = await graphJson(q.toString());
    const base = appOne.images[0]!.layers[0]!;
    assert.equal(base.digest, appTwo.images[0]!.layers[0]!.digest);
    const baseNodes = graph.nodes.filter((n) => n.digest === base.digest);
    assert.equal(baseNodes.length, 1);
    assert.equal(baseNodes[0]!.size, base.size);
    assert.deepEqual(incoming(graph, baseNodes[0]!.id), [layerId(appOne.images[0]!.layers[1]!.digest), layerId(appTwo.images[0]!.layers[1]!.digest)].sort());
    assert.deepEqual(graph.images.map((i) => i.reference), [ref('app-one'), ref('app-two'), ref('other')]);
    assert.equal(graph.images[0]!.digest, appOne.top.digest);
    assert.equal(graph.images[0]!.totalSize, appOne.images[0]!.layers.reduce((s, l) => s + l.size, 0));
    assert.equal(graph.errors.length, 1);
    assert.equal(graph.errors[0]!.reference, ref('nope'));
    assert.match(graph.errors[0]!.error, new RegExp(`upstream ${upstream.host} answered 404`));
  });

  test('an index is drawn for one platform: linux/amd64 unless asked', async () => {
    const amd = await graphJson(`image=${ref('multi')}`);
    assert.deepEqual(amd.images[0]!.layers, [multi.images[0]!.layers[0]!.digest]);
    assert.equal(amd.images[0]!.platform, 'linux/amd64');
    const arm = await graphJson(`image=${ref('multi')}&platform=linux/arm64`);
    assert.deepEqual(arm.images[0]!.layers, [multi.images[1]!.layers[0]!.digest]);
    assert.equal(arm.images[0]!.platform, 'linux/arm64/v8');
    const none = await graphJson(`image=${ref('multi')}&platform=linux/s390x`);
    assert.match(none.errors[0]!.error, /has no linux\/s390x image \(it has linux\/amd64, linux\/arm64\/v8\)/);
    const bad = await request(`${server.url}/viz/graph.json?image=busybox&platform=linux`);
    assert.equal(bad.status, 400);
    assert.match(bad.body.toString(), /platform "linux" is not os\/architecture/);
  });

  test('graph.svg is an SVG document; no images or too many is a 400', async () => {
    const svg = await request(`${server.url}/viz/graph.svg?image=${ref('other')}`);
    assert.equal(svg.status, 200);
    assert.match(String(svg.headers['content-type']), /^image\/svg\+xml/);
    assert.match(svg.body.toString(), /<svg[\s\S]*id="scratch"[\s\S]*<\/svg>/);
    assert.equal((await request(`${server.url}/viz/graph.svg`)).status, 400);
    const many = new URLSearchParams(Array.from({ length: MAX_IMAGES + 1 }, (_, i) => ['image', `img${i}`]));
    const tooMany = await request(`${server.url}/viz/graph.json?${many}`);
    assert.equal(tooMany.status, 400);
    assert.match(tooMany.body.toString(), /at most 20 images/);
    const page = await request(`${server.url}/viz?images=${encodeURIComponent(Array.from({ length: 21 }, (_, i) => `img${i}`).join('\n'))}`);
    assert.equal(page.status, 400);
    assert.match(page.body.toString(), /class="problem"[^>]*>at most 20 images/);
  });

  test('the page, in host form and path form, prefilled with examples; the landing page lists viz', async () => {
    for (const [url, host] of [[`${server.url}/viz`, undefined], [`${server.url}/`, 'viz.kontain.test']] as const) {
      const res = await request(url, host ? { headers: { Host: host } } : {});
      assert.equal(res.status, 200, url);
      const html = res.body.toString();
      assert.match(html, /<textarea id="images" name="images"[^>]*>#[^<]*debian:bookworm-slim/);
      assert.match(html, new RegExp(`<form method="get" action="${host ? '/' : '/viz'}">`));
      assert.match(String(res.headers['content-security-policy']), /default-src 'none'/);
    }
    const hostApi = await request(`${server.url}/graph.json?image=${ref('other')}`, { headers: { Host: 'viz.kontain.test' } });
    assert.equal(hostApi.status, 200);
    assert.equal((JSON.parse(hostApi.body.toString()) as ImageGraph).images.length, 1);
    // Only the viz host and the bare domain have it: another host's /viz is not viz.
    assert.equal((await request(`${server.url}/viz`, { headers: { Host: 'random.kontain.test' } })).status, 404);
    const landing = (await request(`${server.url}/`)).body.toString();
    assert.match(landing, /<h2><a href="https:\/\/viz\.kontain\.test\/">viz<\/a><\/h2><p>Not a registry but a web page/);
  });

  test('registry requests for viz are refused as NAME_UNKNOWN, in both forms', async () => {
    const cases: Array<[string, Record<string, string>]> = [
      ['/v2/viz/busybox/manifests/latest', {}],
      ['/v2/viz/x/blobs/' + digest('a'), {}],
      ['/v2/', { Host: 'viz.kontain.test' }],
      ['/v2/busybox/manifests/latest', { Host: 'viz.kontain.test' }],
    ];
    for (const [p, headers] of cases) {
      const res = await request(`${server.url}${p}`, { headers });
      assert.equal(res.status, 404, p);
      const error = registryError(res);
      assert.equal(error.code, 'NAME_UNKNOWN');
      assert.match(error.message, /viz is a web page, not a registry.*viz\.kontain\.test/);
    }
    // Other hosts' /v2/ is untouched.
    assert.equal((await request(`${server.url}/v2/`)).status, 200);
  });

  test('in Chromium: submit three images, two sharing a base; the base is drawn once with two incoming edges', async () => {
    browser = await launchBrowser();
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(`${server.url}/viz`);
    const lines = ['# two apps on one base, and one more', ref('app-one'), ref('app-two'), ref('other'), ref('app-one'), ref('missing')];
    await page.fill('#images', lines.join('\n'));
    await Promise.all([page.waitForURL(/images=/), page.click('#draw')]);
    await page.waitForSelector('#graph svg');

    const drawn = await page.evaluate(() => {
      const svg = document.querySelector('#graph svg')!;
      return {
        nodes: [...svg.querySelectorAll('g.node')].map((g) => ({ id: g.id, text: g.textContent ?? '' })),
        edges: [...svg.querySelectorAll('g.edge')].map((g) => g.id),
        errors: document.querySelector('#errors')?.textContent ?? '',
        textarea: (document.querySelector('#images') as HTMLTextAreaElement).value,
      };
    });
    const baseId = layerId(appOne.images[0]!.layers[0]!.digest);
    assert.equal(drawn.nodes.filter((n) => n.id === baseId).length, 1, 'shared base layer drawn once');
    const into = drawn.edges.filter((e) => e.endsWith(`:${baseId}`)).map((e) => e.split(':')[1]).sort();
    assert.deepEqual(into, [layerId(appOne.images[0]!.layers[1]!.digest), layerId(appTwo.images[0]!.layers[1]!.digest)].sort());
    assert.equal(drawn.nodes.filter((n) => n.id.startsWith('image-')).length, 3, 'the duplicate is dropped, the missing one not drawn');
    assert.equal(drawn.nodes.filter((n) => n.id.startsWith('layer-')).length, 4);
    assert.ok(drawn.nodes.some((n) => n.id === 'scratch'));
    assert.ok(drawn.nodes.find((n) => n.id === 'image-1')!.text.includes(ref('app-one')));
    assert.ok(drawn.nodes.find((n) => n.id === baseId)!.text.includes(shortDigest(appOne.images[0]!.layers[0]!.digest)));
    assert.match(drawn.errors, new RegExp(`${ref('missing').replace(/[.]/g, '\\.')}: upstream .* answered 404`));
    assert.equal(drawn.textarea, lines.join('\n'), 'the form keeps what was submitted');
    assert.ok(await page.locator(`[id="${baseId}"]`).isVisible());

    const file = path.join(repoRoot(), 'test-artifacts', 'viz.png');
    await mkdir(path.dirname(file), { recursive: true });
    await page.screenshot({ path: file, fullPage: true });
    assert.ok((await stat(file)).size > 10_000);
  });

  test('in Chromium: a legend in the graph\'s colours; a long reference inside its box; this server\'s own images drawn without allowlisting it', async () => {
    browser ??= await launchBrowser();
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const port = server.address.split(':')[1];
    // The server's insecure-registry list names only the upstream: its own images are read in-process.
    const own = [`${server.address}/random/self:2x1000`, `localhost:${port}/random/loop:1x500`];
    await page.goto(`${server.url}/viz`);
    await page.fill('#images', [longRef(), ref('app-one'), ref('app-two'), ...own].join('\n'));
    await Promise.all([page.waitForURL(/images=/), page.click('#draw')]);
    await page.waitForSelector('#graph svg');

    const drawn = await page.evaluate((long) => {
      const svg = document.querySelector('#graph svg')!;
      const box = (e: Element) => {
        const r = e.getBoundingClientRect();
        return { left: r.left, right: r.right, top: r.top, bottom: r.bottom };
      };
      const labelled = [...svg.querySelectorAll('g.node')].find((g) => g.querySelector('text')?.textContent === long)!;
      const swatch = (kind: string) => getComputedStyle(document.querySelector(`#legend .swatch.${kind}`)!).backgroundColor;
      return {
        text: box(labelled.querySelector('text')!),
        shape: box(labelled.querySelector('polygon')!),
        fonts: [...new Set([...svg.querySelectorAll('text')].map((t) => getComputedStyle(t).fontFamily))],
        legend: [...document.querySelectorAll('#legend li')].map((li) => li.textContent!.trim()),
        swatches: { image: swatch('image'), shared: swatch('shared'), layer: swatch('layer') },
        fills: {
          image: svg.querySelector('g.node.image polygon')!.getAttribute('fill'),
          shared: svg.querySelector('g.node.shared ellipse')!.getAttribute('fill'),
          layer: svg.querySelector('g.node.layer:not(.shared) ellipse')!.getAttribute('fill'),
        },
        images: [...svg.querySelectorAll('g.node.image')].map((g) => [...g.querySelectorAll('text')].map((t) => t.textContent).join('\n')),
        errors: document.querySelector('#errors')?.textContent ?? '',
      };
    }, longRef());

    assert.ok(drawn.text.left >= drawn.shape.left && drawn.text.right <= drawn.shape.right, `the label ${JSON.stringify(drawn.text)} is inside its box ${JSON.stringify(drawn.shape)}`);
    assert.ok(drawn.text.top >= drawn.shape.top && drawn.text.bottom <= drawn.shape.bottom);
    assert.match(drawn.fonts.join(), /^"?DejaVu Sans"?, Verdana, sans-serif$/, 'the font Graphviz measured is the one asked for');

    assert.deepEqual(drawn.legend.map((item) => item.split(':')[0]!.split(' (')[0]), [
      'an image as asked for',
      'a layer that two or more of these images share',
      'a layer that only one of these images has; each layer shows the start of its digest and its compressed size',
      'scratch',
      'an image sits on its top layer',
      'a layer sits on the layer below it',
    ]);
    const rgb = (hex: string) => `rgb(${[1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)).join(', ')})`;
    for (const kind of ['image', 'shared', 'layer'] as const) assert.equal(drawn.swatches[kind], rgb(drawn.fills[kind]!), `the legend's ${kind} is the graph's`);

    assert.equal(drawn.errors, '', 'every image drawn');
    // random's layers are compressed tar files of the requested byte counts.
    assert.ok(drawn.images.some((label) => label.startsWith(`${own[0]}\n`) && label.endsWith(' kB, 2 layers')), JSON.stringify(drawn.images));
    assert.ok(drawn.images.some((label) => label.startsWith(`${own[1]}\n`) && label.endsWith(' kB, 1 layer')), JSON.stringify(drawn.images));
    await page.screenshot({ path: path.join(repoRoot(), 'test-artifacts', 'viz-legend.png'), fullPage: true });
  });
});

/** The directory with package.json, whether this runs from test/ or dist/test/. */
function repoRoot(): string {
  let dir = import.meta.dirname;
  while (!existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return dir;
}
