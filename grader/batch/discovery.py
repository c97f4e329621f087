"""Finding the work in SRC: one entry per student, a file to grade or the reason there is none.

The layouts (``files``, ``folders``, ``gradescope``, ``canvas``, mixed), the
row names, and a ``.zip`` unpacked safely.  Which file of a student's folder
is the submission is ``submission_file``'s rule, shared with Gradescope.

Everything read here is untrusted and read under ``bounded``'s caps: the
export's ``submission_metadata.yml`` (a file over the cap, with YAML aliases,
too deep or too many values is not used, and the batch goes on without it),
the zip's directory, names and members.  Student-controlled text (file
names, names from the export, reasons) is cleaned here, once, for every
file the batch writes.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import unicodedata
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..bounded import (MAX_METADATA_BYTES, MAX_SOURCE_BYTES, InputError, load_yaml, read_capped,
                       size_text)
from ..errors import UsageError
from ..outcome import RowStatus
from ..report import clean_line
from ..rubric import Rubric
from ..submission_file import PROVIDED, SOURCE_SUFFIXES, is_ignored, pick, plain_name, walk

__all__ = ["Discovery", "MAX_SOURCE_BYTES", "Submission", "discover", "extract_zip",
           "open_source", "read_metadata", "restore_times", "row_names", "safe_name"]

MAX_ZIP_MEMBERS = 20_000
MAX_ZIP_BYTES = 2 * 2**30            # unpacked, all members together
MAX_ZIP_DIRECTORY = 8 * 2**20        # the zip's central directory, read before any member
MAX_ZIP_RATIO = 500                  # unpacked / packed size of one member over 1 MiB
MAX_NAME_CHARS = 1024                # a member's path
CANVAS_NAME = re.compile(r"^(?P<name>[^_]+)(?P<late>_LATE)?_(?P<uid>\d+)_(?P<sid>\d+)_(?P<file>.+)$")


@dataclass(frozen=True)
class Submission:
    """One student's entry: a file to grade, or the reason there is none."""

    student: str          # the row's name: unique, never another's, safe as a file name
    source: str           # where it came from, relative to SRC
    path: Path | None     # the .py or .ipynb to grade
    status: RowStatus | None = None   # None to grade, else a skipped-... status
    reason: str = ""
    info: dict = field(default_factory=dict)   # name, user_id, late, sid, email... from an export


@dataclass
class Discovery:
    layout: str
    submissions: list[Submission]
    ignored: list[dict]


def safe_name(text: str) -> str:
    """A student name usable as a file name: ASCII letters, digits, ``._-``."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", ascii_text).strip("._-")
    return name[:80] or "student"


def _as_submission(student: str, source: str, path: Path | None, status: RowStatus | None = None,
                   reason: str = "", info: dict | None = None) -> Submission:
    if path is not None and status is None:
        try:
            found = os.lstat(path)
        except OSError as exc:
            path, status, reason = None, RowStatus.SKIPPED_NOT_A_FILE, \
                f"cannot be read ({exc.strerror or type(exc).__name__})"
        else:
            if not stat.S_ISREG(found.st_mode):
                path, status, reason = None, RowStatus.SKIPPED_NOT_A_FILE, \
                    "a link or special file, not a regular file"
            elif found.st_size > MAX_SOURCE_BYTES:
                path, status, reason = None, RowStatus.SKIPPED_TOO_LARGE, \
                    f"{size_text(found.st_size)} is more than {size_text(MAX_SOURCE_BYTES)}"
            elif path.suffix not in SOURCE_SUFFIXES:
                path, status, reason = None, RowStatus.SKIPPED_NOT_PYTHON, \
                    f"{path.name} is not a .py or .ipynb file"
    info = {k: clean_line(v)[:300] if isinstance(v, str) else v for k, v in (info or {}).items()}
    return Submission(student, clean_line(source)[:500], path, status, clean_line(reason)[:500],
                      info)


def read_metadata(path: Path) -> dict:
    """Gradescope's ``submission_metadata.yml`` as a mapping (``{}`` when it holds none);
    InputError when it is over the cap, not YAML, or holds aliases, too many values or
    too deep a nesting."""
    metadata = load_yaml(read_capped(path, MAX_METADATA_BYTES), path.name)
    return metadata if isinstance(metadata, dict) else {}


def _gradescope(root: Path, rubric: Rubric, ignored: list[dict]) -> list[tuple]:
    try:
        metadata = read_metadata(root / "submission_metadata.yml")
    except InputError as exc:   # the export's, not a student's: grade without it
        metadata = {}
        why = str(exc).removeprefix("submission_metadata.yml: ")
        ignored.append({"path": "submission_metadata.yml",
                        "reason": f"not used (no names, ids or late flags): {why}"})
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not is_ignored(p)):
        entry = metadata.get(folder.name) if isinstance(metadata.get(folder.name), dict) else {}
        path, status, reason = pick(walk(folder, root, ignored), rubric.submission_name, root)
        source = str(path.relative_to(root)) if path else folder.name + "/"
        for name, info in _gradescope_members(folder.name, entry, metadata):
            found.append((name, source, path, status, reason, info))
    for path in sorted(p for p in root.iterdir() if p.is_file() and not is_ignored(p)):
        if path.name != "submission_metadata.yml":
            ignored.append({"path": path.name, "reason": "not a submission folder of the export"})
    return found


MAX_GROUP = 20    # members of one Gradescope group submission: each gets a row


def _gradescope_members(folder: str, entry: dict, metadata: dict) -> list[tuple[str, dict]]:
    """(name, info) of each submitter of one Gradescope submission: a group's members each
    get their own row (``group`` names the others), graded from the same file."""
    people = entry.get(":submitters")
    people = [s for s in people if isinstance(s, dict)][:MAX_GROUP] if isinstance(people, list) else []
    common = {"submission": folder, "late": _gradescope_late(entry, metadata)}
    created = entry.get(":created_at")
    try:
        if created:
            common["submitted_at"] = _as_time(created).isoformat()
    except (TypeError, ValueError, OverflowError, OSError):
        pass
    if not people:
        return [(folder, dict(common))]
    names = [str(s.get(":name", "")).strip() for s in people]
    members = []
    for person, name in zip(people, names):
        info = dict(common)
        for key in ("sid", "email"):
            if person.get(f":{key}"):
                info[key] = str(person[f":{key}"])
        if info.get("sid") or info.get("email"):
            info["user_id"] = info.get("sid") or info["email"]
        if len(people) > 1:
            info["group"] = [n for n in names if n != name]
        members.append((name or folder, info))
    return members


def _gradescope_late(entry: dict, metadata: dict) -> bool:
    """Late when the export says so, or when it was created after the due date it gives."""
    if entry.get(":late") is not None:
        return bool(entry.get(":late"))
    created = entry.get(":created_at")
    due = (entry.get(":assignment") or {}).get(":due_date") if isinstance(
        entry.get(":assignment"), dict) else None
    try:
        return bool(created and due and _as_time(created) > _as_time(due))
    except (TypeError, ValueError):
        return False


def _as_time(value) -> datetime:
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _canvas(files: list[Path], rubric: Rubric, root: Path, scratch: Path | None = None,
            ignored: list[dict] | None = None) -> list[tuple]:
    groups: dict[tuple[str, str], list[Path]] = {}
    late: set[tuple[str, str]] = set()
    for path in files:
        match = CANVAS_NAME.match(path.name)
        key = (match["name"], match["uid"])
        groups.setdefault(key, []).append(path)
        if match["late"]:
            late.add(key)
    found = []
    for key in sorted(groups):
        paths = groups[key]
        renamed = {p: Path(CANVAS_NAME.match(p.name)["file"]) for p in paths}
        chosen, status, reason = pick([renamed[p] for p in paths], rubric.submission_name,
                                      Path("."))
        path = next((p for p in paths if renamed[p] == chosen), None) if chosen else None
        info = {"user_id": key[1], "canvas_user_id": key[1], "late": key in late}
        source = path.name if path else f"{key[0]}_{key[1]}_*"
        uploads = [p for p in paths if p.suffix.lower() == ".zip"]
        if path is None and uploads and scratch is not None:
            path, status, reason, source = _canvas_upload(uploads, rubric, scratch / key[1],
                                                          ignored if ignored is not None else [])
            source = source or f"{key[0]}_{key[1]}_*"
        # the file time counts only where Canvas flags the file late: an on-time file may
        # have been copied since, and its time be the copy's
        when = _file_time(path if path is not None and path.is_relative_to(root) else
                          (uploads[0] if uploads else None)) if key in late else ""
        if when:
            info["submitted_at"] = when
        found.append((key[0], source, path, status, reason, info))
    return found


def _file_time(path: Path | None) -> str:
    """A file's modification time (an export's submission time), ISO in UTC; "" if none."""
    try:
        return datetime.fromtimestamp(os.lstat(path).st_mtime, timezone.utc).isoformat() \
            if path is not None else ""
    except OSError:
        return ""


def _canvas_upload(uploads: list[Path], rubric: Rubric, folder: Path,
                   ignored: list[dict]) -> tuple[Path | None, RowStatus | None, str, str]:
    """A student's uploaded .zip files, unpacked (``extract_zip``'s caps) into ``folder`` and
    searched like a student's folder: (path, status, reason, source)."""
    unpacked = []
    for n, upload in enumerate(sorted(uploads)):
        target = folder / str(n)
        target.mkdir(parents=True, exist_ok=True)
        try:
            left_out = extract_zip(upload, target)
        except UsageError as exc:
            return (None, RowStatus.SKIPPED_NOT_PYTHON,
                    f"{upload.name} cannot be unpacked: {str(exc).split(': ', 1)[-1][:200]}", "")
        ignored += [{"path": f"{upload.name}:{i['path']}", "reason": i["reason"]} for i in left_out]
        unpacked += [(upload, target, p) for p in walk(target, target)]
    path, status, reason = pick([p for _, _, p in unpacked], rubric.submission_name, folder)
    if path is None:
        return None, status, f"in the uploaded zip: {reason}", ""
    upload, target, _ = next(u for u in unpacked if u[2] == path)
    return path, None, "", f"{upload.name}:{path.relative_to(target).as_posix()}"


def restore_times(archive: Path, root: Path) -> None:
    """Give the files unpacked from ``archive`` into ``root`` the times the archive records
    (as UTC): an export's file times are its submission times."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()[:MAX_ZIP_MEMBERS]
    except (OSError, zipfile.BadZipFile):
        return
    base = root.resolve()
    for member in members:
        target = base / member.filename.replace("\\", "/")
        try:
            if member.is_dir() or not target.resolve().is_relative_to(base) \
                    or not stat.S_ISREG(os.lstat(target).st_mode):
                continue
            when = datetime(*member.date_time, tzinfo=timezone.utc).timestamp()
            os.utime(target, (when, when), follow_symlinks=False)
        except (OSError, ValueError):
            continue


def _unwrap(root: Path, rubric: Rubric) -> Path:
    """Open a single folder that wraps everything (as zips often have)."""
    entries = [p for p in root.iterdir() if not is_ignored(p)]
    if len(entries) != 1 or not entries[0].is_dir() or entries[0].is_symlink():
        return root
    inner = [p for p in entries[0].iterdir() if not is_ignored(p)]
    if all(p.is_file() for p in inner) and any(
            plain_name(p) in (rubric.submission_name, Path(rubric.submission_name).stem + ".ipynb")
            for p in inner):
        return root  # one student's folder, not a wrapper
    return entries[0]


def discover(root: Path, rubric: Rubric, exclude: Path | None = None,
             scratch: Path | None = None) -> Discovery:
    """Every student entry under ``root`` (an unpacked SRC), in a stable order.

    ``scratch``: where a Canvas student's uploaded .zip is unpacked (without it, an upload
    that is only a zip is skipped as not Python)."""
    root = _unwrap(root, rubric)
    ignored: list[dict] = []
    found: list[tuple] = []
    if (root / "submission_metadata.yml").is_file():
        layout = "gradescope"
        found = _gradescope(root, rubric, ignored)
    else:
        files, folders = [], []
        for p in sorted(root.iterdir()):
            if exclude is not None and p.resolve() == exclude:
                continue
            if exclude is not None and p.is_dir() and exclude.is_relative_to(p.resolve()):
                ignored.append({"path": p.name, "reason": "holds the output folder (--out)"})
            elif is_ignored(p):
                ignored.append({"path": p.name, "reason": "hidden or system file"})
            elif p.is_dir() and not p.is_symlink():
                folders.append(p)
            elif p.name in PROVIDED:
                ignored.append({"path": p.name, "reason": "a file provided with the assignment"})
            else:
                files.append(p)
        canvas = [p for p in files if CANVAS_NAME.match(p.name)]
        kinds = []
        if canvas and len(canvas) * 2 >= len(files):
            kinds.append("canvas")
            found += _canvas(canvas, rubric, root, scratch, ignored)
            files = [p for p in files if p not in canvas]
        if files:
            kinds.append("files")
            found += [(p.stem, p.name, p, None, "", {}) for p in files]
        if folders:
            kinds.append("folders")
            for folder in folders:
                path, status, reason = pick(walk(folder, root, ignored), rubric.submission_name,
                                            root)
                source = str(path.relative_to(root)) if path else folder.name + "/"
                found.append((folder.name, source, path, status, reason, {}))
        layout = "+".join(kinds) if kinds else "empty"
    names = row_names([(raw, source, info.get("user_id", "")) for raw, source, _, _, _, info
                       in found])
    submissions = [_as_submission(name, source, path, status, reason, {"name": raw} | info)
                   for name, (raw, source, path, status, reason, info) in zip(names, found)]
    submissions.sort(key=lambda s: s.student.lower())
    return Discovery(layout, submissions, _cleaned(ignored))


def _cleaned(entries: list[dict]) -> list[dict]:
    return [{k: clean_line(v)[:500] for k, v in e.items()} for e in entries]


def row_names(entries: list[tuple[str, str, str]]) -> list[str]:
    """A unique row name per (name, source, user id), never equal to another's own name.

    ``safe_name(name)``, then ``+<user id>`` where there is one; names that still
    collide (case-insensitively: file systems) each get ``+<digest of the source>``.
    ``safe_name`` never writes ``+``, so a suffixed name is nobody's plain name,
    and each suffix depends on its own entry only, not on who else is in the class.
    """
    bases = []
    for name, _, user_id in entries:
        base = safe_name(name)
        bases.append(f"{base}+{safe_name(user_id)}" if user_id else base)
    counts: dict[str, int] = {}
    for base in bases:
        counts[base.lower()] = counts.get(base.lower(), 0) + 1
    names = []
    for base, (_, source, user_id) in zip(bases, entries):
        if counts[base.lower()] > 1:
            digest = hashlib.sha256(f"{source}\0{user_id}".encode()).hexdigest()[:10]
            base = f"{base}+{digest}"
        names.append(base)
    return names


def open_source(src: Path, scratch: Path) -> tuple[Path, list[dict]]:
    """SRC as a folder to read (a zip unpacked into ``scratch``), and what was left out."""
    if src.is_dir():
        return src.resolve(), []
    if src.is_file() and zipfile.is_zipfile(src):
        root = scratch / "src"
        root.mkdir()
        left_out = _cleaned(extract_zip(src, root))
        restore_times(src, root)
        return root, left_out
    raise UsageError(f"{src}: not a folder or a .zip file")


def _directory(archive: Path) -> None:
    """Refuse a zip whose central directory (read whole by ``zipfile``) is over the caps."""
    try:
        with open(archive, "rb") as f:
            end = zipfile._EndRecData(f)
    except (OSError, ValueError, EOFError) as exc:
        raise UsageError(f"{archive}: not a readable zip file ({type(exc).__name__})") from None
    if end is None:
        raise UsageError(f"{archive}: not a readable zip file (no end of directory)")
    entries, size = end[zipfile._ECD_ENTRIES_TOTAL], end[zipfile._ECD_SIZE]
    if entries > MAX_ZIP_MEMBERS:
        raise UsageError(f"{archive}: {entries} entries is more than {MAX_ZIP_MEMBERS}")
    if size > MAX_ZIP_DIRECTORY:
        raise UsageError(f"{archive}: a directory of {size_text(size)} is more than "
                         f"{size_text(MAX_ZIP_DIRECTORY)}")


def _refused(member: zipfile.ZipInfo, name: str, root: Path, seen: set[str]) -> str:
    """Why ``member`` is left out, or "" to unpack it."""
    if not name or len(name) > MAX_NAME_CHARS or "\0" in name:
        return "a name that is empty, too long or holds a NUL"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in name.split("/"):
        return "a path outside the archive"
    target = os.path.normpath(os.path.join(root, name))
    if not target.startswith(str(root) + os.sep):
        return "a path outside the archive"
    if target in seen:
        return "a second entry of the same name"
    if stat.S_ISLNK(member.external_attr >> 16):
        return "a symbolic link"
    if member.file_size > MAX_SOURCE_BYTES:
        return f"{size_text(member.file_size)}, more than {size_text(MAX_SOURCE_BYTES)}"
    if member.file_size > 2**20 and member.file_size > MAX_ZIP_RATIO * max(1, member.compress_size):
        return f"compressed more than {MAX_ZIP_RATIO}:1"
    seen.add(target)
    return ""


def extract_zip(archive: Path, dest: Path) -> list[dict]:
    """Unpack ``archive`` safely; returns what was left out.

    The directory is checked before ``zipfile`` reads it (entries, size); each
    member's name (no path escapes, NUL, duplicates or links), declared size
    and compression ratio before it is read, and its bytes as they are copied
    (each capped at ``MAX_SOURCE_BYTES``, all at ``MAX_ZIP_BYTES``).  A zip inside
    the zip is unpacked as a file, never opened.  A member that fails is left
    out with its reason; only an archive that cannot be read at all stops.
    """
    _directory(archive)
    left_out: list[dict] = []
    total = 0
    try:
        zf = zipfile.ZipFile(archive)
    except Exception as exc:   # zipfile raises many kinds on a malformed directory
        raise UsageError(f"{archive}: not a readable zip file ({type(exc).__name__})") from None
    with zf:
        members = zf.infolist()
        if len(members) > MAX_ZIP_MEMBERS:
            raise UsageError(f"{archive}: {len(members)} entries is more than {MAX_ZIP_MEMBERS}")
        root = dest.resolve()
        seen: set[str] = set()
        for member in members:
            name = member.filename.replace("\\", "/")
            if name.endswith("/"):   # a folder (ZipInfo.is_dir fails on an empty name)
                continue
            why = _refused(member, name, root, seen)
            if why:
                left_out.append({"path": member.filename[:MAX_NAME_CHARS], "reason": why})
                continue
            target = Path(os.path.normpath(os.path.join(root, name)))
            limit = min(MAX_SOURCE_BYTES, MAX_ZIP_BYTES - total)
            created = False
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.parent.resolve() != target.parent or target.is_symlink():
                    raise ValueError("outside")
                with zf.open(member) as src, open(target, "xb") as dst:
                    created = True
                    copied = 0
                    while chunk := src.read(1 << 20):
                        copied += len(chunk)
                        if copied > limit:
                            raise ValueError("too large")
                        dst.write(chunk)
                total += copied
            except Exception as exc:   # zlib, lzma, CRC, OS errors...: this member only
                if created:
                    target.unlink(missing_ok=True)
                reason = ("larger than the limits" if str(exc) == "too large"
                          else "a path outside the archive" if str(exc) == "outside"
                          else f"cannot be unpacked ({type(exc).__name__})")
                left_out.append({"path": member.filename[:MAX_NAME_CHARS], "reason": reason})
    return left_out
