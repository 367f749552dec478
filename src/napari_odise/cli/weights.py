"""``napari-odise weights``: see, download, verify and import the official weight files.

Exit codes: 0 success; 1 a file is missing, damaged, wrong or could not be downloaded (every refusal
of this command, reported by :mod:`napari_odise.cli.refusals`); 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys

from napari_odise import weights
from napari_odise.cli.refusals import refuse
from napari_odise.errors import UserError
from napari_odise.weights import hashing
from napari_odise.weights.own_files import ROLES as STAND_IN_ROLES


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "weights",
        help="download, verify and import the official weight files",
        description="Manage the weight files in the napari-odise home folder "
        "($NAPARI_ODISE_HOME or the user cache folder).",
    )
    parser.set_defaults(func=lambda args: _help(parser), refused_status=1)
    commands = parser.add_subparsers(dest="weights_command", metavar="ACTION")

    status = commands.add_parser("status", help="list the files, where they go and whether they are verified")
    status.add_argument("--verify", action="store_true", help="hash files whose digest is not remembered yet")
    status.set_defaults(func=run_status)

    download = commands.add_parser("download", help="download files (default: those of the official model)")
    download.add_argument("names", nargs="*", metavar="NAME", help="manifest names (see `status`)")
    download.add_argument("--model", default="official", help="download this model's files when no NAME is given")
    download.add_argument("--force", action="store_true", help="download again even if the file is present")
    download.add_argument("--url", help="download from this URL instead (one NAME only)")
    download.add_argument("--no-progress", action="store_true", help="no progress bars")
    download.set_defaults(func=run_download)

    verify = commands.add_parser("verify", help="hash files again and compare with the manifest")
    verify.add_argument("names", nargs="*", metavar="NAME", help="manifest names (default: every present file)")
    verify.add_argument("--cache", action="store_true", help="also check every byte of the cache files")
    verify.add_argument("--no-progress", action="store_true", help="no progress bars")
    verify.set_defaults(func=run_verify)

    importer = commands.add_parser(
        "import", help="copy (or link) files you already have into the weights folder, verified"
    )
    importer.add_argument(
        "--odise", metavar="FILE",
        help="odise_label_coco_50e-*.pth or odise_caption_coco_50e-*.pth; a copy that is not byte-equal to the "
        "release (re-saved, converted, a mirror) is imported if every key and shape fits the official head",
    )
    importer.add_argument("--sd", metavar="FILE", help="sd-v1-3.ckpt")
    importer.add_argument("--clip", metavar="FILE", help="ViT-L-14-336px.pt")
    importer.add_argument(
        "--link", action="store_true", help="hard-link (or symlink across file systems) instead of copying"
    )
    importer.add_argument("--no-progress", action="store_true", help="no progress bars")
    importer.add_argument(
        "--no-convert", action="store_true", help="only place and verify; convert to the cache on first use"
    )
    importer.set_defaults(func=run_import)

    use = commands.add_parser(
        "use",
        help="use your own Stable Diffusion / CLIP files instead of the manifest's (by path, no copy)",
        description="Record Stable Diffusion v1.x (ldm .ckpt/.safetensors or a diffusers folder) and/or "
        "CLIP ViT-L-14-336 (OpenAI archive or open_clip state dict) files you already have. Each is "
        "checked key by key (names and shapes) before it is recorded, and a file that does not fit is "
        "refused. ODISE checkpoints: use `weights import`.",
    )
    use.add_argument("--sd", metavar="PATH", help="Stable Diffusion v1.x file or diffusers folder")
    use.add_argument("--clip", metavar="PATH", help="CLIP ViT-L-14-336 weights")
    use.add_argument("--reset", action="store_true", help="forget your files and use the manifest's again")
    use.add_argument(
        "--no-convert", action="store_true", help="only check and record; convert to the cache on first use"
    )
    use.set_defaults(func=run_use)

    clear = commands.add_parser("clear-cache", help="delete the converted safetensors cache (rebuilt on next use)")
    clear.set_defaults(func=run_clear_cache)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0


def _error(message: str) -> int:
    return refuse(message, status=1)


def _human(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _verified_text(verified: bool | None) -> str:
    return {True: "yes", False: "MISMATCH", None: "not checked"}[verified]


def run_status(args) -> int:
    rows = weights.status(verify=args.verify, progress=args.verify)
    table = [("NAME", "ROLE", "PRESENT", "SIZE", "VERIFIED", "CHECKED BY", "CACHED", "LICENCE")]
    for row in rows:
        table.append(
            (
                row.name,
                row.role,
                "yes" if row.present else "no",
                _human(row.size),
                _verified_text(row.verified) if row.present else "-",
                row.verified_by,
                "yes" if row.cached else "no",
                row.licence,
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]) - 1)]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False)) + "  " + line[-1])
    cache_files = weights.cache.cache_files()
    print(f"\nWeights folder: {weights.weights_dir()}  (put files downloaded by hand here, under these names)")
    for row in rows:
        print(f"  {row.name}: {row.path.name}")
    own = weights.own_files()
    if own:
        print("Your own files, used instead of the manifest's (`weights use --reset` to stop):")
        for role, path in own.items():
            kind = "" if role in STAND_IN_ROLES else "  (imported head, not the released file)"
            print(f"  {role}: {path}{'' if path.exists() else '  (MISSING)'}{kind}")
    cache_size = _human(sum(p.stat().st_size for p in cache_files))
    print(f"Cache folder:   {weights.cache_dir()}  ({len(cache_files)} files, {cache_size})")
    if any(row.verified_by == weights.recorded.PREFIX_ONLY for row in rows):
        print("'sha256 prefix only': the ODISE release publishes 8 hex digits of each file's sha256, "
              "which a made-up file can match; the full sha256 and size are recorded when the file is "
              "first imported, downloaded or verified, and checked exactly from then on.")
    return 0


def run_download(args) -> int:
    names = args.names or [w.name for w in weights.files_for_model(args.model)]
    if args.url and len(names) != 1:
        return _error("--url needs exactly one NAME")
    files = [weights.get(name) for name in names]
    failures = 0
    for weight_file in files:
        print(f"{weight_file.name}: {weight_file.filename} (licence: {weight_file.licence})")
        try:
            path = weights.download(weight_file, progress=not args.no_progress, force=args.force, url=args.url)
        except weights.WeightsError as error:  # reported; the other files are still downloaded
            failures += 1
            print(f"error: {error}", file=sys.stderr)
            continue
        print(f"  ok: {path}")
    return 1 if failures else 0


def run_verify(args) -> int:
    files = [weights.get(name) for name in args.names]
    if not files:
        files = [w for w in weights.all_files() if w.local_path().is_file()]
        if not files:
            return _error(f"no weight files in {weights.weights_dir()} (see `napari-odise weights status`)")
    failures = 0
    for weight_file in files:
        path = weight_file.local_path()
        if not path.is_file():
            failures += 1
            print(f"{weight_file.name}: MISSING ({path})")
            continue
        digest = hashing.file_sha256(path, progress=not args.no_progress, use_index=False)
        if hashing.digest_matches(digest, weight_file):
            weights.recorded.record_first(weight_file, digest, path.stat().st_size)
            print(f"{weight_file.name}: ok (sha256 {digest}; checked by "
                  f"{weights.recorded.verified_by(weight_file)})")
        else:
            failures += 1
            print(f"{weight_file.name}: MISMATCH")
            print(f"  {hashing.mismatch_error(path, weight_file, digest)}", file=sys.stderr)
    if args.cache:
        for cache_file in weights.cache.cache_files():
            problem = weights.cache_problem(cache_file, deep=True)
            if problem:
                failures += 1
                print(f"cache {cache_file.name}: DAMAGED ({problem}); `napari-odise weights clear-cache` removes it")
            else:
                print(f"cache {cache_file.name}: ok")
    return 1 if failures else 0


def run_import(args) -> int:
    if not (args.odise or args.sd or args.clip):
        return _error("give at least one of --odise FILE, --sd FILE, --clip FILE")
    try:
        placed = weights.import_files(
            odise=args.odise, sd=args.sd, clip=args.clip, link=args.link, progress=not args.no_progress
        )
    except UserError:
        raise  # a missing, wrong or refused file: cli.refusals reports it
    except OSError as error:  # the file system refused to copy or link (disk full, permissions)
        return _error(f"could not place the file: {error}")
    for imported in placed:
        print(f"imported: {imported.path}")
        if imported.note():
            print(imported.note())
    if not args.no_convert:
        return _convert_imported()
    return 0


def run_use(args) -> int:
    if args.reset:
        weights.forget_own_files()
        print("using the manifest's files")
        return 0
    if not (args.sd or args.clip):
        return _error("give --sd PATH and/or --clip PATH (or --reset)")
    print("checking every key and shape against the official model ...")
    recorded = weights.use_own_files(sd=args.sd, clip=args.clip)  # refuses a file that does not fit
    for role, path in recorded.items():
        print(f"{role}: {path}")
    if not args.no_convert:
        return _convert_imported()
    return 0


def _convert_imported() -> int:
    """Build the safetensors cache of every official model whose three files are now there (the
    user's own files count), which also checks them key by key."""
    from napari_odise.checkpoints.official_loading import prepare_official
    from napari_odise.weights.own_files import stand_in

    present = {s.name for s in weights.status() if s.present}
    own = weights.own_files()
    for model in weights.model_names():
        if not all(f.name in present or stand_in(f, own) for f in weights.files_for_model(model)):
            continue
        print(f"converting {model} to the fast-start cache ...")
        try:
            caches = prepare_official(model, progress=True)
        except UserError as error:
            return _error(f"{model}: {error}")
        print(f"{model}: cache ready ({len(caches)} files in {weights.cache_dir()})")
    return 0


def run_clear_cache(args) -> int:
    removed = weights.clear_cache()
    print(f"removed {len(removed)} cache files from {weights.cache_dir()}")
    return 0
