"""Shared by the build's fix-up scripts for files in our output folders."""
import os
import shutil


def replace(path, data):
    """Write data as a new file renamed over path, keeping its mode: never writes through a hard link
    (into the NuGet cache, say), and never leaves a half-written file where the build expects a whole one."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    shutil.copymode(path, tmp)
    os.replace(tmp, path)
