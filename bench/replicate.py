"""A bigger index for search measurements, from a smaller one: every segment copied N
times under new segment ids (the same documents N times; ids repeat, so it is for
searching, never for writing to). Used for issue 18's 1.1M-document figures in
bench/RESULTS.md when a `large` crawl could not finish on a loaded machine.

    python -m bench.replicate SOURCE_INDEX TARGET_INDEX 6

Whoosh stores a segment as one compound file whose directory names its parts after the
segment id, so each copy gets that directory rewritten, and the table of contents lists
every copy. Posting lists get N times longer, as at N times the documents; the lexicon
stays the source's (fewer rare words than a real crawl of that size).
"""

from __future__ import annotations

import argparse
import copy
import io
import shutil
from pathlib import Path

from whoosh import index
from whoosh.codec.whoosh3 import W3Segment
from whoosh.filedb.compound import CompoundStorage
from whoosh.filedb.filestore import FileStorage
from whoosh.filedb.structfile import StructFile
from whoosh.index import TOC


def replicate(src: Path, dst: Path, copies: int) -> int:
    toc = TOC.read(index.open_dir(str(src)).storage, "MAIN")
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    storage = FileStorage(str(dst))
    segments = []
    for _ in range(copies):
        for seg in toc.segments:
            if not seg.compound:
                raise SystemExit(f"segment {seg.segid} is not a compound file")
            new = copy.deepcopy(seg)
            new.segid = W3Segment._random_id()
            raw = (src / f"MAIN_{seg.segid}.seg").read_bytes()
            head = StructFile(io.BytesIO(raw))
            dirpos = head.read_long()
            head.seek(dirpos)
            directory, options = head.read_pickle(), head.read_pickle()
            renamed = {name.replace(seg.segid, new.segid): info for name, info in directory.items()}
            out = storage.create_file(f"MAIN_{new.segid}.seg")
            out.write(raw[:dirpos])
            CompoundStorage.write_dir(out, 0, renamed, options)
            segments.append(new)
    TOC(toc.schema, segments, 1).write(storage, "MAIN")
    return index.open_dir(str(dst)).doc_count_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("copies", type=int)
    opts = parser.parse_args()
    print(f"{replicate(opts.source, opts.target, opts.copies):,} documents in {opts.target}")


if __name__ == "__main__":
    main()
