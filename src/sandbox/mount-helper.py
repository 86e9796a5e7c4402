"""Mount syscalls for the server (root): one long-lived process, so a mount does not cost a
mount(8) process. Reads one request a line on stdin and answers each, in order, with `ok` or
`error <errno> <message>` (see mount-helper.ts):

    mount <bytes> <inodes> <path>   a fresh tmpfs on the (empty, server-made) directory
    bind <from>\t<to>               bind the mounted directory `from` at `to` too, nosuid, nodev
    umount <path>                   detach it (a tmpfs: its files are gone with it)
"""
import ctypes
import os
import sys

libc = ctypes.CDLL(None, use_errno=True)
MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND = 2, 4, 32, 4096
MNT_DETACH, UMOUNT_NOFOLLOW = 2, 8


def answer(result):
    if result == 0:
        sys.stdout.write("ok\n")
    else:
        errno = ctypes.get_errno()
        sys.stdout.write("error %d %s\n" % (errno, os.strerror(errno)))
    sys.stdout.flush()


for line in sys.stdin:
    op, _, rest = line.rstrip("\n").partition(" ")
    if op == "mount":
        size, inodes, path = rest.split(" ", 2)
        options = "size=%d,nr_inodes=%d,mode=0700" % (int(size), int(inodes))
        answer(libc.mount(b"runcell-job", path.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options.encode()))
    elif op == "bind":
        source, target = rest.split("\t", 1)
        result = libc.mount(source.encode(), target.encode(), None, MS_BIND, None)
        if result == 0:  # a bind takes its flags from a remount
            flags = MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV
            result = libc.mount(None, target.encode(), None, flags, None)
        answer(result)
    elif op == "umount":
        # Lazy: the tree is dead, but a straggling reference must not keep the files alive.
        answer(libc.umount2(rest.encode(), MNT_DETACH | UMOUNT_NOFOLLOW))
    else:
        sys.stdout.write("error 22 unknown request\n")
        sys.stdout.flush()
