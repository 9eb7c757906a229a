//! `Mm`: a Linux process's memory over a `VmMap`, with Linux's results, partial effects, placement and VMA list.
