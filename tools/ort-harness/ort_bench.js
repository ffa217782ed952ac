#!/usr/bin/env node
// Runs a qnas-exported ONNX model in ONNX Runtime (CPU execution provider) under the qnas latency protocol:
// batch 1, fixed intra-op threads, warm-up, >= 50 timed runs, median / p90 / coefficient of variation.
// Prints one JSON object on stdout: the timing, the ORT version and the outputs for every input image.
//
//   node ort_bench.js --model m.onnx --input images.f32 --shape 1,3,224,224 [--threads 1] [--runs 50]
//                     [--warmup 10]
// images.f32 holds one or more float32 images of the given shape, back to back.
'use strict';
const fs = require('fs');
const path = require('path');

function fail(message) {
  process.stderr.write(`ort_bench: error: ${message}\n`);
  process.exit(1);
}

function parseArgs(argv) {
  const args = { threads: 1, runs: 50, warmup: 10 };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i];
    const value = argv[i + 1];
    if (!key.startsWith('--') || value === undefined) fail(`expected --key value pairs, got '${key}'`);
    args[key.slice(2)] = value;
  }
  for (const required of ['model', 'input', 'shape']) {
    if (!args[required]) fail(`missing --${required}`);
  }
  args.threads = Number(args.threads);
  args.runs = Number(args.runs);
  args.warmup = Number(args.warmup);
  if (!(args.runs >= 50)) fail(`--runs ${args.runs} is below the protocol's minimum of 50`);
  if (!(args.threads >= 1)) fail('--threads must be at least 1');
  args.shape = args.shape.split(',').map(Number);
  if (args.shape.some((d) => !(d > 0))) fail(`bad --shape '${args.shape}'`);
  return args;
}

function summarize(samples) {
  const s = [...samples].sort((a, b) => a - b);
  const n = s.length;
  const median = n % 2 ? s[(n - 1) / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
  const mean = s.reduce((a, b) => a + b, 0) / n;
  const variance = s.reduce((a, b) => a + (b - mean) * (b - mean), 0) / Math.max(1, n - 1);
  return {
    median_ms: median,
    p90_ms: s[Math.min(n - 1, Math.ceil(0.9 * n) - 1)],
    min_ms: s[0],
    mean_ms: mean,
    cv: mean > 0 ? Math.sqrt(variance) / mean : 0,
    runs: n,
  };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  let ort;
  try {
    ort = require('onnxruntime-node');
  } catch (e) {
    fail(`onnxruntime-node is not installed: run scripts/setup.sh (npm install in ${__dirname})`);
  }
  if (!fs.existsSync(args.model)) fail(`model ${args.model} not found`);
  if (!fs.existsSync(args.input)) fail(`input ${args.input} not found`);
  const perImage = args.shape.reduce((a, b) => a * b, 1);
  const bytes = fs.readFileSync(args.input);
  if (bytes.length % (4 * perImage) !== 0 || bytes.length === 0) {
    fail(`${args.input} has ${bytes.length} bytes, not a whole number of ${args.shape.join('x')} float32 images`);
  }
  const all = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
  const images = all.length / perImage;

  const options = (level) => ({
    executionProviders: ['cpu'],
    intraOpNumThreads: args.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: level,
  });
  // ORT 1.30's layout optimisations (level 'all') reject some valid QDQ graphs after fusing them ("two nodes
  // with same node name": a MobileNetV2 block whose input feeds both its shortcut projection and its expand
  // conv). Such a model runs at the highest level that accepts it (at 'basic' no QDQ fusion: float kernels), and the
  // result says which.
  let level;
  let session;
  for (level of ['all', 'extended', 'basic']) {
    try {
      session = await ort.InferenceSession.create(args.model, options(level));
      break;
    } catch (e) {
      if (level === 'basic' || !String(e.message || e).includes('same node name')) throw e;
    }
  }
  const inputName = session.inputNames[0];
  const outputName = session.outputNames[0];
  const feeds = (i) => ({
    [inputName]: new ort.Tensor('float32', all.slice(i * perImage, (i + 1) * perImage), args.shape),
  });

  const outputs = [];
  for (let i = 0; i < images; ++i) {
    const result = await session.run(feeds(i));
    outputs.push(Array.from(result[outputName].data));
  }
  const feed = feeds(0);
  for (let i = 0; i < args.warmup; ++i) await session.run(feed);
  const samples = [];
  for (let i = 0; i < args.runs; ++i) {
    const t0 = process.hrtime.bigint();
    await session.run(feed);
    samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  const version = require(path.join(path.dirname(require.resolve('onnxruntime-node')), '..', 'package.json')).version;
  process.stdout.write(
    JSON.stringify({ engine: `onnxruntime-node ${version}`, threads: args.threads, optimization: level, ...summarize(samples), outputs }) +
      '\n',
  );
}

main().catch((e) => fail(e.message || String(e)));
