//! System V shared memory: `shmat` (`do_shmat`) and `shmdt` (`ksys_shmdt`), on top of `mmap`/`munmap`.
//!
//! Invariant: every attach maps its own `struct file` (so two attaches of one segment never merge, as
//! in Linux), and that file's id is in `shm_files`, which is how `shmdt` tells a segment's VMAs (Linux:
//! `vm_ops == &shm_vm_ops`) from other mappings.

use super::*;
use crate::abi::*;

impl Mm {
    /// `shmat(shmid, addr, shmflg)`: attaches the segment `seg` — its identity, name
    /// (`/SYSV%08x (deleted)` with its key), `dev` (the shm mount's, `0:1`), `inode` (the shmid), `size` (the
    /// segment's size in bytes) and, as `readable`/`writable`, whether the caller's IPC permissions allow
    /// reading and writing. Returns the address, or the errno x86-64 Linux returns (`SHMLBA` is a page).
    pub fn shmat(&mut self, seg: &FileRef, addr: u64, shmflg: u64) -> Result<u64, Errno> {
        let mut addr = addr;
        let mut flags = MAP_SHARED;
        if addr != 0 {
            if addr % PAGE != 0 {
                if shmflg & SHM_RND == 0 {
                    return Err(Errno::EINVAL);
                }
                addr &= !(PAGE - 1);
                if addr == 0 && shmflg & SHM_REMAP != 0 {
                    return Err(Errno::EINVAL);
                }
            }
            flags |= MAP_FIXED;
        } else if shmflg & SHM_REMAP != 0 {
            return Err(Errno::EINVAL);
        }
        let (prot, write) =
            if shmflg & SHM_RDONLY != 0 { (PROT_READ, false) } else { (PROT_READ | PROT_WRITE, true) };
        let prot = if shmflg & SHM_EXEC != 0 { prot | PROT_EXEC } else { prot };
        if !seg.readable || (write && !seg.writable) {
            return Err(Errno::EACCES);
        }
        let size = seg.size;
        if addr != 0 && shmflg & SHM_REMAP == 0 {
            let Some(end) = addr.checked_add(size) else { return Err(Errno::EINVAL) };
            if self.intersects(addr, end) {
                return Err(Errno::EINVAL);
            }
        }
        // The attach's own file, opened read-only or read-write as the flags ask.
        let id = self.fresh_id();
        let file = FileRef { id, writable: write, append: false, shmem: true, mappable: true, ..seg.clone() };
        let r = self.mmap(addr, size, prot, flags, Some(&file), 0);
        if r.is_ok() {
            self.shm_files.insert(id);
        }
        r
    }

    /// `shmdt(addr)`: detaches the segment attached at `addr`: the first segment VMA at or above `addr`
    /// whose page offset equals its distance from `addr`, then every VMA of the same attach within the
    /// segment's size of `addr` whose offset matches too. `EINVAL` when `addr` is unaligned or no such
    /// VMA exists. A VMA that cannot be unmapped (sealed) is left, and the call still succeeds, as in Linux.
    pub fn shmdt(&mut self, addr: u64) -> Result<u64, Errno> {
        if addr % PAGE != 0 {
            return Err(Errno::EINVAL);
        }
        let matches = |v: &Vma, shm: &alloc::collections::BTreeSet<u64>| {
            v.file.is_some_and(|f| shm.contains(&f)) && v.start.wrapping_sub(addr) / PAGE == v.pgoff
        };
        let first =
            self.vmas_from(addr).find(|v| matches(v, &self.shm_files)).map(|v| (v.start, v.end, v.file));
        let Some((start, end, file)) = first else { return Err(Errno::EINVAL) };
        let size = file.and_then(|f| self.files.get(&f)).map_or(0, |f| page_align(f.size));
        let _ = self.unmap_range(start, end);
        let rest: Vec<(u64, u64)> = self
            .vmas_from(end)
            .take_while(|v| v.end.wrapping_sub(addr) <= size)
            .filter(|v| v.file == file && matches(v, &self.shm_files))
            .map(|v| (v.start, v.end))
            .collect();
        for (s, e) in rest {
            let _ = self.unmap_range(s, e);
        }
        Ok(0)
    }

    /// The VMAs ending above `addr`, in address order (a `VMA_ITERATOR` from `addr`).
    fn vmas_from(&self, addr: u64) -> impl Iterator<Item = &Vma> + '_ {
        let first = self.find_vma(addr).map_or(u64::MAX, |v| v.start);
        self.vmas.from(first)
    }
}
