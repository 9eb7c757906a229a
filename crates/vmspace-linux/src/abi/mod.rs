//! Linux's memory ABI, typed once: PROT_*, MAP_*, MREMAP_*, MADV_*, MLOCK_*, MCL_*, MS_* and errno values.
