//! The `Key:   N kB` counters that `smaps` prints per VMA and `smaps_rollup` once per process
//! (`__show_smap` in `fs/proc/task_mmu.c`), in bytes.

/// Every counter `__show_smap` prints, in bytes (the file says kB). Fields a kernel does not print
/// (`Pss_Anon`/`Pss_File`/`Pss_Shmem` outside the rollup, `Pss_Dirty` before 6.0) stay 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Counters {
    /// `Rss`.
    pub rss: u64,
    /// `Pss`.
    pub pss: u64,
    /// `Pss_Dirty`.
    pub pss_dirty: u64,
    /// `Pss_Anon` (rollup only).
    pub pss_anon: u64,
    /// `Pss_File` (rollup only).
    pub pss_file: u64,
    /// `Pss_Shmem` (rollup only).
    pub pss_shmem: u64,
    /// `Shared_Clean`.
    pub shared_clean: u64,
    /// `Shared_Dirty`.
    pub shared_dirty: u64,
    /// `Private_Clean`.
    pub private_clean: u64,
    /// `Private_Dirty`.
    pub private_dirty: u64,
    /// `Referenced`.
    pub referenced: u64,
    /// `Anonymous`.
    pub anonymous: u64,
    /// `KSM`.
    pub ksm: u64,
    /// `LazyFree`.
    pub lazy_free: u64,
    /// `AnonHugePages`.
    pub anon_huge_pages: u64,
    /// `ShmemPmdMapped`.
    pub shmem_pmd_mapped: u64,
    /// `FilePmdMapped`.
    pub file_pmd_mapped: u64,
    /// `Shared_Hugetlb`.
    pub shared_hugetlb: u64,
    /// `Private_Hugetlb`.
    pub private_hugetlb: u64,
    /// `Swap`.
    pub swap: u64,
    /// `SwapPss`.
    pub swap_pss: u64,
    /// `Locked`.
    pub locked: u64,
}

impl Counters {
    /// Sets the counter named `key` (without its colon) to `bytes`; `false` when `key` is not one.
    pub fn set(&mut self, key: &str, bytes: u64) -> bool {
        let f = match key {
            "Rss" => &mut self.rss,
            "Pss" => &mut self.pss,
            "Pss_Dirty" => &mut self.pss_dirty,
            "Pss_Anon" => &mut self.pss_anon,
            "Pss_File" => &mut self.pss_file,
            "Pss_Shmem" => &mut self.pss_shmem,
            "Shared_Clean" => &mut self.shared_clean,
            "Shared_Dirty" => &mut self.shared_dirty,
            "Private_Clean" => &mut self.private_clean,
            "Private_Dirty" => &mut self.private_dirty,
            "Referenced" => &mut self.referenced,
            "Anonymous" => &mut self.anonymous,
            "KSM" => &mut self.ksm,
            "LazyFree" => &mut self.lazy_free,
            "AnonHugePages" => &mut self.anon_huge_pages,
            "ShmemPmdMapped" => &mut self.shmem_pmd_mapped,
            "FilePmdMapped" => &mut self.file_pmd_mapped,
            "Shared_Hugetlb" => &mut self.shared_hugetlb,
            "Private_Hugetlb" => &mut self.private_hugetlb,
            "Swap" => &mut self.swap,
            "SwapPss" => &mut self.swap_pss,
            "Locked" => &mut self.locked,
            _ => return false,
        };
        *f = bytes;
        true
    }

    /// Adds `o` field by field (saturating).
    pub fn add(&mut self, o: &Counters) {
        let pairs: [(&mut u64, u64); 22] = [
            (&mut self.rss, o.rss),
            (&mut self.pss, o.pss),
            (&mut self.pss_dirty, o.pss_dirty),
            (&mut self.pss_anon, o.pss_anon),
            (&mut self.pss_file, o.pss_file),
            (&mut self.pss_shmem, o.pss_shmem),
            (&mut self.shared_clean, o.shared_clean),
            (&mut self.shared_dirty, o.shared_dirty),
            (&mut self.private_clean, o.private_clean),
            (&mut self.private_dirty, o.private_dirty),
            (&mut self.referenced, o.referenced),
            (&mut self.anonymous, o.anonymous),
            (&mut self.ksm, o.ksm),
            (&mut self.lazy_free, o.lazy_free),
            (&mut self.anon_huge_pages, o.anon_huge_pages),
            (&mut self.shmem_pmd_mapped, o.shmem_pmd_mapped),
            (&mut self.file_pmd_mapped, o.file_pmd_mapped),
            (&mut self.shared_hugetlb, o.shared_hugetlb),
            (&mut self.private_hugetlb, o.private_hugetlb),
            (&mut self.swap, o.swap),
            (&mut self.swap_pss, o.swap_pss),
            (&mut self.locked, o.locked),
        ];
        for (a, b) in pairs {
            *a = a.saturating_add(b);
        }
    }

    /// The unique set size: `Private_Clean + Private_Dirty`.
    pub fn uss(&self) -> u64 {
        self.private_clean.saturating_add(self.private_dirty)
    }

    /// Dirty resident bytes: `Shared_Dirty + Private_Dirty`.
    pub fn dirty(&self) -> u64 {
        self.shared_dirty.saturating_add(self.private_dirty)
    }

    /// Clean resident bytes: `Shared_Clean + Private_Clean`.
    pub fn clean(&self) -> u64 {
        self.shared_clean.saturating_add(self.private_clean)
    }
}

/// Splits `Key:   N kB` into the key and the bytes; `None` for a line of another shape.
/// `Err` when the key is well formed but the number is not.
pub fn kb_line(line: &str) -> Option<Result<(&str, u64), &'static str>> {
    let (k, v) = line.split_once(':')?;
    if k.is_empty() || k.contains(' ') {
        return None;
    }
    let v = v.trim().strip_suffix("kB")?.trim_end();
    Some(match v.parse::<u64>() {
        Ok(n) => n.checked_mul(1024).map(|b| (k, b)).ok_or("counter overflows"),
        Err(_) => Err("bad kB value"),
    })
}
