#!/usr/bin/python3
"""Minimal safetensors reader and writer (no `safetensors` package needed).

Format (spec §1.2): an 8-byte little-endian u64 header length N, then N bytes
of UTF-8 JSON {name: {"dtype", "shape", "data_offsets": [begin, end]}} plus an
optional "__metadata__" (str -> str), then the raw little-endian row-major data.
Offsets are relative to the first byte after the header.

Writer conventions (what the C loader is tested against):
  * the header is padded with spaces to a multiple of 8 bytes;
  * tensors are laid out like the official library does: sorted by element
    size (largest first), then by name, so every tensor is naturally aligned;
  * a tensor whose data is None is all zeros and is written as a hole
    (seek + truncate), giving a sparse file.

Run as a script to list the tensors of a file:  safetensors_io.py FILE
"""
import argparse
import json
import mmap
import struct
import sys

import numpy as np

# dtype name -> (numpy storage dtype, element size)
DTYPES = {
    "F64": ("<f8", 8), "F32": ("<f4", 4), "F16": ("<f2", 2), "BF16": ("<u2", 2),
    "I64": ("<i8", 8), "I32": ("<i4", 4), "I16": ("<i2", 2), "I8": ("i1", 1),
    "U8": ("u1", 1), "BOOL": ("u1", 1),
}


def write(path, tensors, metadata=None):
    """Write a safetensors file.

    tensors: dict name -> (dtype_name, shape, data) where data is a C-contiguous
    numpy array whose bytes are already in the storage format of dtype_name
    (BF16 as uint16 bit patterns), or None for an all-zero tensor.
    Returns the file size in bytes.
    """
    if sys.byteorder != "little":
        raise SystemExit("safetensors_io: big-endian hosts are not supported")
    order = sorted(tensors, key=lambda n: (-DTYPES[tensors[n][0]][1], n))
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    for name in order:
        dt, shape, data = tensors[name]
        nbytes = DTYPES[dt][1] * int(np.prod(shape, dtype=np.int64))
        if data is not None and data.nbytes != nbytes:
            raise ValueError(f"{name}: {data.nbytes} bytes, expected {nbytes}")
        header[name] = {"dtype": dt, "shape": [int(s) for s in shape],
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * (-len(hjson) % 8)
    total = 8 + len(hjson) + offset
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        base = f.tell()
        for name in order:
            dt, shape, data = tensors[name]
            if data is None:
                continue
            f.seek(base + header[name]["data_offsets"][0])
            mv = memoryview(np.ascontiguousarray(data)).cast("B")
            step = 1 << 26
            for i in range(0, len(mv), step):
                f.write(mv[i:i + step])
        f.truncate(total)
    return total


class SafeTensors:
    """Read-only view of a safetensors file, memory-mapped."""

    def __init__(self, path):
        self.path = path
        self._f = open(path, "rb")
        self._mm = mmap.mmap(self._f.fileno(), 0, access=mmap.ACCESS_READ)
        (n,) = struct.unpack("<Q", self._mm[:8])
        if n > len(self._mm) - 8:
            raise ValueError(f"{path}: header length {n} exceeds file size")
        self.header = json.loads(self._mm[8:8 + n].decode("utf-8"))
        self.metadata = self.header.pop("__metadata__", {}) or {}
        self._base = 8 + n

    def keys(self):
        return list(self.header)

    def info(self, name):
        return self.header[name]

    def numpy(self, name):
        """Return the tensor as a numpy array (F16/BF16 widened to float32 exactly)."""
        h = self.header[name]
        np_dt, size = DTYPES[h["dtype"]]
        b, e = h["data_offsets"]
        count = int(np.prod(h["shape"], dtype=np.int64))
        if e - b != count * size:
            raise ValueError(f"{name}: data_offsets do not match shape/dtype")
        arr = np.frombuffer(self._mm, dtype=np_dt, count=count, offset=self._base + b)
        if h["dtype"] == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        return arr.reshape(h["shape"])

    def close(self):
        self._mm.close()
        self._f.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file", help="a .safetensors file")
    args = ap.parse_args()
    st = SafeTensors(args.file)
    for k, v in st.metadata.items():
        print(f"# {k} = {v}")
    for name in st.keys():
        h = st.info(name)
        print(f"{name}\t{h['dtype']}\t{h['shape']}\t{h['data_offsets']}")


if __name__ == "__main__":
    main()
