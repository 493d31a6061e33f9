//! A stand-in for the few `std::os::windows` items that `windows_backend.rs` uses, so that the unit
//! tests of other hosts can type-check the Windows backend against the real `windows-sys`
//! declarations (no Windows target can be installed where hostgate is developed). Nothing
//! here is ever run.
#![allow(unsafe_code, dead_code)]

pub mod ffi {
    /// `std::os::windows::ffi::OsStrExt`.
    pub trait OsStrExt {
        fn encode_wide(&self) -> std::vec::IntoIter<u16>;
    }

    impl OsStrExt for std::ffi::OsStr {
        fn encode_wide(&self) -> std::vec::IntoIter<u16> {
            self.to_string_lossy()
                .encode_utf16()
                .collect::<Vec<u16>>()
                .into_iter()
        }
    }
}

pub mod io {
    /// `std::os::windows::io::RawHandle`.
    pub type RawHandle = *mut std::ffi::c_void;

    /// `std::os::windows::io::OwnedHandle` (closes on drop there; nothing here).
    #[derive(Debug)]
    pub struct OwnedHandle(RawHandle);

    // SAFETY: as std's OwnedHandle, which is Send + Sync.
    unsafe impl Send for OwnedHandle {}
    // SAFETY: as std's OwnedHandle, which is Send + Sync.
    unsafe impl Sync for OwnedHandle {}

    impl Drop for OwnedHandle {
        fn drop(&mut self) {}
    }

    /// `std::os::windows::io::AsRawHandle`.
    pub trait AsRawHandle {
        fn as_raw_handle(&self) -> RawHandle;
    }

    /// `std::os::windows::io::FromRawHandle`.
    pub trait FromRawHandle {
        /// # Safety
        /// As std's: `handle` must be owned by the caller.
        unsafe fn from_raw_handle(handle: RawHandle) -> Self;
    }

    impl AsRawHandle for OwnedHandle {
        fn as_raw_handle(&self) -> RawHandle {
            self.0
        }
    }

    impl AsRawHandle for std::fs::File {
        fn as_raw_handle(&self) -> RawHandle {
            std::ptr::null_mut()
        }
    }

    impl FromRawHandle for OwnedHandle {
        unsafe fn from_raw_handle(handle: RawHandle) -> Self {
            Self(handle)
        }
    }

    impl From<std::io::PipeReader> for OwnedHandle {
        fn from(_: std::io::PipeReader) -> Self {
            Self(std::ptr::null_mut())
        }
    }

    impl From<std::io::PipeWriter> for OwnedHandle {
        fn from(_: std::io::PipeWriter) -> Self {
            Self(std::ptr::null_mut())
        }
    }
}

pub mod process {
    /// `std::os::windows::process::ExitStatusExt`.
    pub trait ExitStatusExt {
        fn from_raw(raw: u32) -> Self;
    }

    impl ExitStatusExt for std::process::ExitStatus {
        fn from_raw(raw: u32) -> Self {
            <Self as std::os::unix::process::ExitStatusExt>::from_raw(raw.cast_signed())
        }
    }
}
