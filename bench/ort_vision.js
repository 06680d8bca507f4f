#!/usr/bin/env node
/*
 * ort_vision.js - CLIP's image tower in ONNX Runtime (onnxruntime-node, CPU EP), timed
 * the same way as bench/bench_vision.c.
 *
 * The ONNX file is exported locally from the same checkpoint by
 * `bench/torch_vision.py --export-onnx` (input "pixel_values" [B,3,S,S], output
 * "image_embeds" [B,E], dynamic batch). Pixels come from `bench_vision --dump-pixels`
 * so every engine sees the same tensors; --compare takes `bench_vision
 * --dump-embeddings` and reports the max abs difference of normalised embeddings.
 *
 * onnxruntime-node is not a project dependency: bench/image_tower.sh installs it into a
 * cache directory outside the repository (ONNXRUNTIME_NODE_INSTALL=skip npm install
 * onnxruntime-node, platform-notes §5) and points --ort-dir (or ORT_NODE_DIR) at it.
 *
 * --precision NAME only labels the output ("precision" key, the config, the check): the
 * precision is the model file's, e.g. an int8 model from bench/ort_quantize.py. If the
 * session cannot be created (ORT has no kernel for an operator: bf16 MatMul on the CPU EP),
 * this prints {"engine":"ort","precision":...,"unsupported":"<ORT's message>"} and exits 4.
 *
 * Usage:
 *   node ort_vision.js MODEL.onnx --pixels PX.f32 [--size 224] [--threads 2]
 *        [--batches 1,8] [--runs 7] [--warmup 2] [--gflop 8.82] [--compare OURS.f32]
 *        [--ort-dir DIR] [--precision fp32|int8|bf16]
 * Prints one JSON line per batch size (the keys of bench_vision), plus a check line.
 */
'use strict';
const fs = require('fs');
const path = require('path');

function parseArgs(argv) {
    const a = {size: 224, threads: 2, batches: '1,8', runs: 7, warmup: 2, gflop: 8.82,
               ortDir: process.env.ORT_NODE_DIR || '', precision: 'fp32'};
    const names = {'--pixels': 'pixels', '--size': 'size', '--threads': 'threads',
                   '--batches': 'batches', '--runs': 'runs', '--warmup': 'warmup',
                   '--gflop': 'gflop', '--compare': 'compare', '--ort-dir': 'ortDir',
                   '--precision': 'precision'};
    for (let i = 0; i < argv.length; i++) {
        const k = argv[i];
        if (k === '-h' || k === '--help') {
            console.log(fs.readFileSync(__filename, 'utf8').split('*/')[0]);
            process.exit(0);
        } else if (names[k] && i + 1 < argv.length) {
            a[names[k]] = argv[++i];
        } else if (k.startsWith('-')) {
            console.error(`ort_vision: bad option ${k}`);
            process.exit(2);
        } else {
            a.model = k;
        }
    }
    for (const k of ['size', 'threads', 'runs', 'warmup'])
        a[k] = parseInt(a[k], 10);
    a.gflop = parseFloat(a.gflop);
    if (!a.model || !a.pixels) {
        console.error('usage: ort_vision.js MODEL.onnx --pixels PX.f32 [options] (see --help)');
        process.exit(2);
    }
    return a;
}

function loadOrt(dir) {
    const tries = dir ? [path.join(dir, 'node_modules', 'onnxruntime-node'), dir] : [];
    tries.push('onnxruntime-node');
    for (const t of tries) {
        try {
            return require(t);
        } catch (e) { /* next */ }
    }
    console.error('ort_vision: cannot load onnxruntime-node (set --ort-dir or ORT_NODE_DIR)');
    process.exit(3);
}

function readF32(file) {
    const buf = fs.readFileSync(file);
    return new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
}

function median(v) {
    const s = [...v].sort((x, y) => x - y), n = s.length;
    return n % 2 ? s[(n - 1) / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

const r3 = (x) => Math.round(x * 1000) / 1000;

async function main() {
    const a = parseArgs(process.argv.slice(2));
    const ort = loadOrt(a.ortDir);
    const per = 3 * a.size * a.size;
    const px = readF32(a.pixels);
    if (px.length % per) {
        console.error(`ort_vision: ${a.pixels} is not a whole number of [3,${a.size},${a.size}] images`);
        process.exit(2);
    }
    const n = px.length / per;
    const opts = {executionProviders: ['cpu'], graphOptimizationLevel: 'all',
                  intraOpNumThreads: a.threads, interOpNumThreads: 1,
                  executionMode: 'sequential'};
    let t0 = performance.now();
    let sess;
    try {
        sess = await ort.InferenceSession.create(a.model, opts);
    } catch (e) {
        // Session creation is where ORT says it has no kernel for an operator.
        console.log(JSON.stringify({engine: 'ort', precision: a.precision,
                                    unsupported: String(e && e.message ? e.message : e)}));
        process.exit(4);
    }
    const loadMs = performance.now() - t0;
    const inName = sess.inputNames[0], outName = sess.outputNames[0];

    const batchOf = (b) => {
        const data = new Float32Array(b * per);
        for (let i = 0; i < b; i++)
            data.set(px.subarray((i % n) * per, (i % n + 1) * per), i * per);
        return new ort.Tensor('float32', data, [b, 3, a.size, a.size]);
    };

    if (a.compare) {
        const out = (await sess.run({[inName]: batchOf(n)}))[outName];
        const e = out.data, d = e.length / n, ours = readF32(a.compare);
        let maxDiff = 0, minCos = Infinity;
        for (let i = 0; i < n; i++) {
            let sq = 0, dot = 0;
            for (let j = 0; j < d; j++) sq += e[i * d + j] * e[i * d + j];
            const inv = 1 / Math.sqrt(sq);
            for (let j = 0; j < d; j++) {
                const v = e[i * d + j] * inv;
                maxDiff = Math.max(maxDiff, Math.abs(v - ours[i * d + j]));
                dot += v * ours[i * d + j];
            }
            minCos = Math.min(minCos, dot);
        }
        const what = a.precision === 'fp32' ? 'clipmod vs ort' : `clipmod fp32 vs ort ${a.precision}`;
        console.log(JSON.stringify({engine: 'ort', precision: a.precision, check: what, images: n,
                                    max_abs_diff: maxDiff, min_cosine: minCos}));
    }

    for (const b of a.batches.split(',').map((x) => parseInt(x, 10))) {
        const feeds = {[inName]: batchOf(b)};
        const times = [];
        for (let r = 0; r < a.warmup + a.runs; r++) {
            t0 = performance.now();
            await sess.run(feeds);
            const dt = performance.now() - t0;
            if (r >= a.warmup) times.push(dt);
        }
        const med = median(times);
        const model = a.precision === 'fp32' ? '' : `${a.precision} ${path.basename(a.model)}; `;
        console.log(JSON.stringify({
            engine: 'ort', precision: a.precision,
            config: `${model}intraOp=${a.threads}, interOp=1, sequential, graph opt all`,
            batch: b, threads: a.threads, runs: a.runs, warmup: a.warmup, median_ms: r3(med),
            ms_per_image: r3(med / b), gflops: Math.round(a.gflop * b / (med / 1e3) * 100) / 100,
            min_ms: r3(Math.min(...times)), max_ms: r3(Math.max(...times)),
            times_ms: times.map(r3), images: n, load_ms: Math.round(loadMs * 10) / 10,
            ort: ort.env.versions ? ort.env.versions.common : 'unknown'}));
    }
    await sess.release();
}

main().catch((e) => {
    console.error(`ort_vision: ${e && e.message ? e.message : e}`);
    process.exit(1);
});
