#!/usr/bin/env python3
"""Fails when a public item is reachable by two paths: a module file that declares `pub mod m`
and also re-exports from `m` (`pub use m::...`) offers each of those items both as `m::Item`
and as `Item`. Each crate keeps its modules private behind curated re-exports, or keeps a
module public as a namespace of its own and re-exports nothing from it."""
import pathlib
import re
import sys

root = pathlib.Path(__file__).resolve().parent.parent
bad = []
for path in sorted(root.glob("**/src/**/*.rs")):
    if "target" in path.parts or "fuzz" in path.parts:
        continue
    text = path.read_text()
    for m in re.findall(r"^pub mod (\w+);", text, re.M):
        if re.search(rf"^pub use (self::)?{m}::", text, re.M):
            bad.append(f"{path.relative_to(root)}: `pub mod {m}` and `pub use {m}::...`")
    # A crate re-exported whole (`pub use mesh_x as x;`) offers its items as `x::Item`: the
    # same file must not also re-export one of them under another path.
    for krate in re.findall(r"^pub use (\w+) as \w+;", text, re.M):
        if re.search(rf"^pub use {krate}::", text, re.M):
            bad.append(f"{path.relative_to(root)}: `pub use {krate} as ..` and `pub use {krate}::...`")
for b in bad:
    print(b)
if bad:
    print("items reachable by two paths: make the module private or stop re-exporting from it")
    sys.exit(1)
print("one path per public item: ok")
