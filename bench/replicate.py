"""A bigger index for search measurements, from a smaller one: every segment copied N
times under new segment ids (the same documents N times; ids repeat, so it is for
searching, never for writing to). Used for issue 18's 1.1M-document figures in
bench/RESULTS.md when a `large` crawl could not finish on a loaded machine.

    python -m bench.replicate SOURCE_INDEX TARGET_INDEX 6
    python -m bench.replicate OTHER_INDEX TARGET_INDEX 1 --append   # add to TARGET's segments

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


def replicate(src: Path, dst: Path, copies: int, append: bool = False) -> int:
    """``copies`` copies of ``src``'s segments in ``dst``: a new index, or (``append``) added
    to ``dst``'s own segments (bench.tenmillion tops 10 copies of a 1M index up to 10M)."""
    toc = TOC.read(index.open_dir(str(src)).storage, "MAIN")
    segments = []
    if append:
        mine = TOC.read(index.open_dir(str(dst)).storage, "MAIN")
        if mine.schema.names() != toc.schema.names():
            raise SystemExit(f"{src} and {dst} have different schemas")
        segments = list(mine.segments)
        generation = mine.generation + 1
    else:
        shutil.rmtree(dst, ignore_errors=True)
        dst.mkdir(parents=True)
        generation = 1
    storage = FileStorage(str(dst))
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
    TOC(toc.schema, segments, generation).write(storage, "MAIN")
    return index.open_dir(str(dst)).doc_count_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("copies", type=int)
    parser.add_argument("--append", action="store_true", help="add the copies to TARGET's segments")
    opts = parser.parse_args()
    print(f"{replicate(opts.source, opts.target, opts.copies, opts.append):,} documents in {opts.target}")


if __name__ == "__main__":
    main()
