#!/usr/bin/env node
/*
 * e2e_ort_worker.js - the ONNX Runtime half of bench/e2e_python.py's pipeline.
 *
 * Debian has no python3-onnxruntime and there is no PyPI here, so the Python side of
 * the end-to-end benchmark hands its tensors to onnxruntime-node through a pipe.
 * Protocol (little-endian): the worker loads MODEL.onnx (CPU EP, intraOp=THREADS,
 * interOp=1, sequential, graph optimisation "all", as bench/ort_vision.js) and writes
 * one line "ready\n" to stdout. Then, per batch, it reads a uint32 B and B*3*S*S
 * float32 pixels from stdin and writes B*E float32 image embeddings (not normalised)
 * to stdout. B = 0 or end of input ends it.
 *
 * Usage: node e2e_ort_worker.js MODEL.onnx [--size 224] [--threads 2] [--ort-dir DIR]
 */
'use strict';
const fs = require('fs');
const path = require('path');

function loadOrt(dir) {
    const tries = dir ? [path.join(dir, 'node_modules', 'onnxruntime-node'), dir] : [];
    tries.push('onnxruntime-node');
    for (const t of tries) {
        try {
            return require(t);
        } catch (e) { /* next */ }
    }
    console.error('e2e_ort_worker: cannot load onnxruntime-node (--ort-dir or ORT_NODE_DIR)');
    process.exit(3);
}

/* Reads exactly n bytes from fd 0 (blocking), or null at end of input. */
function readExact(n) {
    const buf = Buffer.allocUnsafe(n);
    let got = 0;
    while (got < n) {
        let k;
        try {
            k = fs.readSync(0, buf, got, n - got, null);
        } catch (e) {
            if (e.code === 'EAGAIN') continue;
            throw e;
        }
        if (k === 0) return null;
        got += k;
    }
    return buf;
}

function writeAll(buf) {
    let off = 0;
    while (off < buf.length) {
        try {
            off += fs.writeSync(1, buf, off, buf.length - off);
        } catch (e) {
            if (e.code !== 'EAGAIN') throw e;
        }
    }
}

async function main() {
    const argv = process.argv.slice(2);
    const a = {size: 224, threads: 2, ortDir: process.env.ORT_NODE_DIR || ''};
    for (let i = 0; i < argv.length; i++) {
        if (argv[i] === '--size') a.size = parseInt(argv[++i], 10);
        else if (argv[i] === '--threads') a.threads = parseInt(argv[++i], 10);
        else if (argv[i] === '--ort-dir') a.ortDir = argv[++i];
        else a.model = argv[i];
    }
    const ort = loadOrt(a.ortDir);
    const sess = await ort.InferenceSession.create(a.model, {
        executionProviders: ['cpu'], graphOptimizationLevel: 'all',
        intraOpNumThreads: a.threads, interOpNumThreads: 1, executionMode: 'sequential'});
    const inName = sess.inputNames[0], outName = sess.outputNames[0];
    const per = 3 * a.size * a.size;
    writeAll(Buffer.from('ready\n'));
    for (;;) {
        const head = readExact(4);
        if (!head) break;
        const b = head.readUInt32LE(0);
        if (!b) break;
        const raw = readExact(b * per * 4);
        if (!raw) break;
        const px = new Float32Array(raw.buffer, raw.byteOffset, b * per);
        const out = (await sess.run({[inName]: new ort.Tensor('float32', px, [b, 3, a.size, a.size])}))[outName];
        writeAll(Buffer.from(out.data.buffer, out.data.byteOffset, out.data.byteLength));
    }
    await sess.release();
}

main().catch((e) => {
    console.error(`e2e_ort_worker: ${e && e.message ? e.message : e}`);
    process.exit(1);
});
