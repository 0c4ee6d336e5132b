//! Watching sealed trees for changes where the kernel cannot enforce (detection only).
