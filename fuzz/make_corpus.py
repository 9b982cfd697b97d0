#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/: a handful of tiny
valid files per parser and a few broken ones. Deterministic; rerun after changing a format.
The JPEGs were written by stb_image_write (8x8 RGB at quality 90, 4x4 gray at quality 50).
Files named regression-* are inputs the fuzzers found (fixed since), committed as they are.
"""
import base64
import gzip
import json
import os
import struct
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
RGB_JPEG = base64.b64decode("/9j/4AAQSkZJRgABAQAAAQABAAD/2wCEAAMCAgMCAgMDAwMEAwMEBQgFBQQEBQoHBwYIDAoMDAsKCwsNDhIQDQ4RDgsLEBYQERMUFRUVDA8XGBYUGBIUFRQBAwQEBQQFCQUFCRQNCw0UFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFP/AABEIAAgACAMBIgACEQEDEQH/xAGiAAABBQEBAQEBAQAAAAAAAAAAAQIDBAUGBwgJCgsQAAIBAwMCBAMFBQQEAAABfQECAwAEEQUSITFBBhNRYQcicRQygZGhCCNCscEVUtHwJDNicoIJChYXGBkaJSYnKCkqNDU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6g4SFhoeIiYqSk5SVlpeYmZqio6Slpqeoqaqys7S1tre4ubrCw8TFxsfIycrS09TV1tfY2drh4uPk5ebn6Onq8fLz9PX29/j5+gEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoLEQACAQIEBAMEBwUEBAABAncAAQIDEQQFITEGEkFRB2FxEyIygQgUQpGhscEJIzNS8BVictEKFiQ04SXxFxgZGiYnKCkqNTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqCg4SFhoeIiYqSk5SVlpeYmZqio6Slpqeoqaqys7S1tre4ubrCw8TFxsfIycrS09TV1tfY2dri4+Tl5ufo6ery8/T19vf4+fr/2gAMAwEAAhEDEQA/AKd/pWi+FIbOW703S9BsrPWpLGA6xol14atcEOQn9paaxjvXxF8uECOA8iYHB2f+Et8I/wDQV+H/AP4XPiH/AOJqb9u3/k1jwR/2Odn/AOkN9XwzXTGPJon/AF+f33ZzOTdr9D//2Q==")
GRAY_JPEG = base64.b64decode("/9j/4AAQSkZJRgABAQAAAQABAAD/2wCEABALDA4MChAODQ4SERATGCgaGBYWGDEjJR0oOjM9PDkzODdASFxOQERXRTc4UG1RV19iZ2hnPk1xeXBkeFxlZ2MBERISGBUYLxoaL2NCOEJjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY//AABEIAAQABAMBIgACEQEDEQH/xAGiAAABBQEBAQEBAQAAAAAAAAAAAQIDBAUGBwgJCgsQAAIBAwMCBAMFBQQEAAABfQECAwAEEQUSITFBBhNRYQcicRQygZGhCCNCscEVUtHwJDNicoIJChYXGBkaJSYnKCkqNDU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6g4SFhoeIiYqSk5SVlpeYmZqio6Slpqeoqaqys7S1tre4ubrCw8TFxsfIycrS09TV1tfY2drh4uPk5ebn6Onq8fLz9PX29/j5+gEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoLEQACAQIEBAMEBwUEBAABAncAAQIDEQQFITEGEkFRB2FxEyIygQgUQpGhscEJIzNS8BVictEKFiQ04SXxFxgZGiYnKCkqNTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqCg4SFhoeIiYqSk5SVlpeYmZqio6Slpqeoqaqys7S1tre4ubrCw8TFxsfIycrS09TV1tfY2dri4+Tl5ufo6ery8/T19vf4+fr/2gAMAwEAAhEDEQA/AMaLTrbYPkp/9nW39yrEX3BTqAP/2Q==")


def write(target, name, data):
    folder = os.path.join(ROOT, target)
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def gz(data):
    return gzip.compress(data, mtime=0)


# ---- idx: 2-byte little-endian length of the images file, the images file, the labels file.
def idx_images(count, rows, cols, magic=0x803):
    return struct.pack(">IIII", magic, count, rows, cols) + bytes(range(count * rows * cols))


def idx_labels(labels, magic=0x801):
    return struct.pack(">II", magic, len(labels)) + bytes(labels)


def idx_pair(images, labels):
    return struct.pack("<H", len(images)) + images + labels


write("idx", "valid", idx_pair(idx_images(2, 3, 2), idx_labels([1, 7])))
write("idx", "valid_gzip", idx_pair(gz(idx_images(3, 2, 2)), gz(idx_labels([0, 1, 2]))))
write("idx", "truncated_images", idx_pair(idx_images(2, 3, 2)[:-1], idx_labels([1, 7])))
write("idx", "count_mismatch", idx_pair(idx_images(2, 1, 1), idx_labels([1])))
write("idx", "wrong_magic", idx_pair(idx_images(1, 1, 1, magic=0x801), idx_labels([1])))
write("idx", "huge_sizes", idx_pair(struct.pack(">IIII", 0x803, 0xFFFFFFFF, 0xFFFFFFFF, 2),
                                    idx_labels([])))

# ---- cifar: records of one label byte and 3072 pixel bytes.
record = bytes([3]) + bytes(i % 251 for i in range(3072))
write("cifar", "one_record", record)
write("cifar", "two_records_gzip", gz(record + bytes([9]) + bytes(3072)))
write("cifar", "bad_label", bytes([10]) + bytes(3072))
write("cifar", "truncated", record[:100])
write("cifar", "empty", b"")


# ---- image: PNG and JPEG, valid and broken.
def png(width, height, color_type, depth, rows, interlace=0):
    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body +
                struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, interlace)
    raw = b"".join(b"\0" + row for row in rows)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) +
            chunk(b"IEND", b""))


rgb_png = png(3, 2, 2, 8, [bytes(range(9)), bytes(range(9, 18))])
write("image", "rgb.png", rgb_png)
write("image", "gray_alpha.png", png(2, 2, 4, 8, [bytes([1, 2, 3, 4]), bytes([5, 6, 7, 8])]))
write("image", "gray16.png", png(2, 1, 0, 16, [bytes([1, 2, 3, 4])]))
write("image", "rgba_interlaced.png", png(2, 2, 6, 8, [bytes(range(8)), bytes(range(8, 16))], 1))
write("image", "truncated.png", rgb_png[:40])
write("image", "bad_crc.png", rgb_png[:30] + bytes([rgb_png[30] ^ 0xFF]) + rgb_png[31:])
write("image", "rgb.jpg", RGB_JPEG)
write("image", "gray.jpg", GRAY_JPEG)
write("image", "truncated.jpg", RGB_JPEG[:len(RGB_JPEG) // 2])
# Overflowed stb_image 2.27's Huffman table (a DHT segment with no room for its counts).
write("image", "stb_dht_overflow.jpg", bytes.fromhex("ffd8ffc4d9d9000fff"))
write("image", "not_an_image", b"GIF89a\x01\x00\x01\x00")


# ---- safetensors: 8-byte little-endian header length, JSON header, data.
def safetensors(header, data):
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


floats = struct.pack("<4f", 1, 2, 3, 4)
write("safetensors", "valid", safetensors(
    {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
     "n": {"dtype": "I64", "shape": [1], "data_offsets": [16, 24]},
     "__metadata__": {"format": "lattice"}}, floats + struct.pack("<q", 7)))
write("safetensors", "scalar_and_empty", safetensors(
    {"s": {"dtype": "F64", "shape": [], "data_offsets": [0, 8]},
     "e": {"dtype": "U8", "shape": [0, 3], "data_offsets": [8, 8]}}, struct.pack("<d", 0.5)))
write("safetensors", "offsets_overlap", safetensors(
    {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
     "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12)))
write("safetensors", "bad_dtype", safetensors(
    {"a": {"dtype": "F8", "shape": [1], "data_offsets": [0, 1]}}, bytes(1)))
write("safetensors", "short_header", struct.pack("<Q", 1000) + b"{}")
write("safetensors", "bf16_f16", safetensors(
    {"b": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]},
     "h": {"dtype": "F16", "shape": [2], "data_offsets": [4, 8]}},
    struct.pack("<4H", 0x3f80, 0xff81, 0x3c00, 0x7c00)))

# ---- npy: magic, version, little-endian header length, dict literal padded to 64 bytes, data.
def npy(dict_text, data, major=1):
    length_bytes = 2 if major == 1 else 4
    unpadded = 8 + length_bytes + len(dict_text) + 1
    header = dict_text + " " * ((64 - unpadded % 64) % 64) + "\n"
    length = struct.pack("<H" if major == 1 else "<I", len(header))
    return b"\x93NUMPY" + bytes([major, 0]) + length + header.encode() + data


def npy_dict(descr, shape, fortran="False"):
    return "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (descr, fortran, shape)


write("npy", "float32_2x3", npy(npy_dict("<f4", "(2, 3)"), struct.pack("<6f", 1.5, -2, 0.25, 3, 4, 5)))
write("npy", "bool_v2", npy(npy_dict("|b1", "(3,)"), bytes([1, 0, 1]), major=2))
write("npy", "int64_scalar_v3", npy(npy_dict("<i8", "()"), struct.pack("<q", 7), major=3))
write("npy", "fortran", npy(npy_dict("<f8", "(1, 1)", "True"), struct.pack("<d", 1)))
write("npy", "big_endian", npy(npy_dict(">f4", "(1,)"), struct.pack(">f", 1)))
write("npy", "truncated", npy(npy_dict("<i4", "(4,)"), struct.pack("<3i", 1, 2, 3)))

# ---- precision_spec: stack specs, quantizer values and format names.
for i, spec in enumerate([
        "", "fp32", "bf16", "w=bf16:sr", "gemm=mxfp4", "gemm=nvfp4,acc=bf16:k16",
        "gemm.fwd=mxfp8,gemm.bwd=mxfp8_e5m2,opt=bf16,master=fp32",
        "gemm=e2m1:b16:scale=ue4m3:rule=nvfp4:ts:zero=one", "gemm.sr=all,gemm.hadamard=backward",
        "gemm=mxfp4,gemm.max=softsoftmax,gemm.alpha=2.5", "a=e4m3:overflow=saturate:flush",
        "e4m3", "e5m2", "ue8m0", "int8", "e3m4b10", "ue4m2fn", "mxfp6:sr3", "w=mxfp9"]):
    write("precision_spec", "spec%02d" % i, spec)

# ---- schedule specs.
for i, spec in enumerate([
        "constant", "cosine", "linear:0.1", "warmup:100,cosine:0.1", "wsd:100:0.2",
        "wsd:10:0.5:0.01", "warmup:0", "cosine:2", "warmup:5,warmup:6", "linear:nan"]):
    write("schedule", "spec%02d" % i, spec)

# ---- text: plain text, WikiText-like, bytes that are not UTF-8, empty.
write("text", "plain.txt", "the quick brown fox\njumps over\n\nthe lazy dog\n")
write("text", "wikitext.raw", " = Title = \n\n The <unk> of 1 @,@ 000 people . \n")
write("text", "binary", bytes(range(256)))
write("text", "empty", b"")

# ---- sweep files: the repository's own, a minimal one and broken ones.
SWEEPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sweeps")
for name in sorted(os.listdir(SWEEPS)):
    if name.endswith(".toml"):
        with open(os.path.join(SWEEPS, name), "rb") as f:
            write("sweep", name, f.read())
write("sweep", "minimal.toml", 'trainer = "mnist"\nstack = "bf16"\n[grid]\nlr = [0.1, 0.01]\n')
write("sweep", "skip.toml", 'trainer = "mnist"\n[grid]\nstack = ["fp32", "mxfp4"]\n'
      'block = [16, 32]\n[[skip]]\nstack = "fp32"\nblock = 16\n')
write("sweep", "bad_value.toml", 'trainer = "mnist"\n[grid]\nlr = [{a = 1}]\n')
write("sweep", "unclosed.toml", 'trainer = "mnist\n[grid\n')

# ---- checkpoint_json: variants of valid.json, which fuzz_checkpoint_json writes itself (its
# tensor file's CRC is in it): LATTICE_FUZZ_WRITE_SEED=fuzz/corpus/checkpoint_json/valid.json
# build-sanitize/fuzz/fuzz_checkpoint_json -runs=0
VALID = os.path.join(ROOT, "checkpoint_json", "valid.json")
if os.path.exists(VALID):
    with open(VALID) as f:
        valid = json.load(f)

    def variant(name, **changes):
        state = dict(valid)
        state.update(changes)
        write("checkpoint_json", name, json.dumps(state, indent=1))

    variant("step_string", step="12")
    variant("step_negative", step=-5)
    variant("schedule_bad", schedule={"spec": "cosine:abc"})
    variant("scaler_null", loss_scaler=None)
    variant("rng_negative", rng={"seed": -1, "next_subsequence": 0})
    variant("wrong_crc", tensors_crc32="00000000")
    write("checkpoint_json", "truncated", json.dumps(valid)[:60])
