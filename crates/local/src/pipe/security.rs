//! Who may open a channel's pipe: an explicit, protected DACL built from
//! `socketmode`, applied to every instance the listener creates.
//!
//! Windows would otherwise give a new pipe the creator's default DACL,
//! which on many systems lets every local user read and write it. The DACL
//! here grants full access to the user running the daemon (it needs
//! `FILE_CREATE_PIPE_INSTANCE` to create the next instances), to
//! Administrators and to SYSTEM, and nothing to anyone else. When
//! `socketmode` lets "others" write (`0o002`, as `"0666"` does), it also
//! lets Authenticated Users read and write the pipe, but not create
//! instances of it (so no other process can pose as the daemon). Group
//! bits have no Windows meaning and are ignored.

use std::io;
use std::os::windows::io::{AsRawHandle, BorrowedHandle};
use std::ptr;

use windows_sys::Win32::Foundation::{LocalFree, ERROR_SUCCESS, HANDLE};
use windows_sys::Win32::Security::Authorization::{
    ConvertSecurityDescriptorToStringSecurityDescriptorW, ConvertSidToStringSidW,
    ConvertStringSecurityDescriptorToSecurityDescriptorW, GetSecurityInfo, SetSecurityInfo,
    SDDL_REVISION_1, SE_KERNEL_OBJECT,
};
use windows_sys::Win32::Security::{
    GetSecurityDescriptorDacl, GetTokenInformation, TokenUser, ACL, DACL_SECURITY_INFORMATION,
    PROTECTED_DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, SECURITY_ATTRIBUTES, TOKEN_QUERY,
    TOKEN_USER,
};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

/// Access of "others" when `socketmode` lets them in: `FILE_GENERIC_READ |
/// FILE_GENERIC_WRITE` without `FILE_APPEND_DATA`, which on a pipe means
/// `FILE_CREATE_PIPE_INSTANCE`.
const CLIENT_ACCESS: u32 = 0x0012_019b;

/// `socketmode` bit that lets other users connect.
const OTHERS_WRITE: u32 = 0o002;

/// The SDDL text of the DACL for `mode`, for the user whose SID is `user`.
pub fn sddl_for_mode(user: &str, mode: u32) -> String {
    let mut s = format!("D:P(A;;GA;;;{user})(A;;GA;;;BA)(A;;GA;;;SY)");
    if mode & OTHERS_WRITE != 0 {
        s.push_str(&format!("(A;;0x{CLIENT_ACCESS:x};;;AU)"));
    }
    s
}

/// A self-relative security descriptor allocated by Windows (freed on drop).
#[derive(Debug)]
pub struct Descriptor {
    sd: PSECURITY_DESCRIPTOR,
    sddl: String,
}

// SAFETY: the descriptor is a block of memory this value owns alone and
// never changes after creation; Windows only reads it.
unsafe impl Send for Descriptor {}
// SAFETY: as above; shared references only ever read it.
unsafe impl Sync for Descriptor {}

impl Descriptor {
    /// The descriptor for `socketmode` `mode`, for the current user.
    pub fn for_mode(mode: u32) -> io::Result<Self> {
        Self::from_sddl(&sddl_for_mode(&current_user_sid()?, mode))
    }

    /// Parses an SDDL string.
    pub fn from_sddl(sddl: &str) -> io::Result<Self> {
        let wide = to_wide(sddl);
        let mut sd: PSECURITY_DESCRIPTOR = ptr::null_mut();
        // SAFETY: `wide` is NUL-terminated and outlives the call; `sd`
        // receives a LocalAlloc'd descriptor that Drop frees.
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                wide.as_ptr(),
                SDDL_REVISION_1,
                &mut sd,
                ptr::null_mut(),
            )
        };
        if ok == 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("bad security descriptor {sddl:?}: {e}"),
            ));
        }
        Ok(Descriptor {
            sd,
            sddl: sddl.to_string(),
        })
    }

    /// The SDDL it was made from.
    pub fn sddl(&self) -> &str {
        &self.sddl
    }

    /// Security attributes pointing at this descriptor, valid while it lives.
    pub fn attributes(&self) -> SECURITY_ATTRIBUTES {
        SECURITY_ATTRIBUTES {
            nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
            lpSecurityDescriptor: self.sd,
            bInheritHandle: 0,
        }
    }

    /// Replaces the DACL of the object behind `handle` (opened with
    /// `WRITE_DAC`) with this descriptor's.
    pub fn apply(&self, handle: BorrowedHandle<'_>) -> io::Result<()> {
        let mut present = 0;
        let mut defaulted = 0;
        let mut dacl: *mut ACL = ptr::null_mut();
        // SAFETY: `self.sd` is a valid descriptor; the out-pointers are
        // valid; `dacl` points into `self.sd`, alive during the next call.
        let ok =
            unsafe { GetSecurityDescriptorDacl(self.sd, &mut present, &mut dacl, &mut defaulted) };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `handle` is borrowed, so open; `dacl` is valid as said
        // above; no owner, group or SACL is passed.
        let rc = unsafe {
            SetSecurityInfo(
                handle.as_raw_handle(),
                SE_KERNEL_OBJECT,
                DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
                ptr::null_mut(),
                ptr::null_mut(),
                dacl,
                ptr::null(),
            )
        };
        if rc != ERROR_SUCCESS {
            return Err(io::Error::from_raw_os_error(rc as i32));
        }
        Ok(())
    }
}

impl Drop for Descriptor {
    fn drop(&mut self) {
        // SAFETY: `sd` came from LocalAlloc (via the SDDL conversion) and
        // is freed exactly once.
        unsafe { LocalFree(self.sd) };
    }
}

/// The DACL of the object behind `handle`, as SDDL text.
pub fn dacl_of(handle: BorrowedHandle<'_>) -> io::Result<String> {
    let mut sd: PSECURITY_DESCRIPTOR = ptr::null_mut();
    // SAFETY: `handle` is borrowed, so open; `sd` receives a LocalAlloc'd
    // descriptor freed below; the other outputs are unused.
    let rc = unsafe {
        GetSecurityInfo(
            handle.as_raw_handle(),
            SE_KERNEL_OBJECT,
            DACL_SECURITY_INFORMATION,
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
            &mut sd,
        )
    };
    if rc != ERROR_SUCCESS {
        return Err(io::Error::from_raw_os_error(rc as i32));
    }
    let mut text: *mut u16 = ptr::null_mut();
    // SAFETY: `sd` is the valid descriptor just returned; `text` receives
    // a LocalAlloc'd NUL-terminated string freed below.
    let ok = unsafe {
        ConvertSecurityDescriptorToStringSecurityDescriptorW(
            sd,
            SDDL_REVISION_1,
            DACL_SECURITY_INFORMATION,
            &mut text,
            ptr::null_mut(),
        )
    };
    let result = if ok == 0 {
        Err(io::Error::last_os_error())
    } else {
        // SAFETY: Windows returned a NUL-terminated UTF-16 string.
        Ok(unsafe { from_wide(text) })
    };
    // SAFETY: both came from LocalAlloc and are freed once (null is fine).
    unsafe {
        LocalFree(text.cast());
        LocalFree(sd);
    }
    result
}

/// The SID of the user this process runs as, as text (`S-1-5-…`).
pub fn current_user_sid() -> io::Result<String> {
    let mut token: HANDLE = ptr::null_mut();
    // SAFETY: the pseudo-handle of the current process is always valid;
    // `token` receives a handle closed below.
    if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `token` is the handle just opened; it is closed when the
    // OwnedHandle drops.
    let token = unsafe {
        <std::os::windows::io::OwnedHandle as std::os::windows::io::FromRawHandle>::from_raw_handle(
            token,
        )
    };
    let raw = std::os::windows::io::AsRawHandle::as_raw_handle(&token);
    let mut len = 0u32;
    // SAFETY: a size query: no buffer, `len` receives the size needed.
    unsafe { GetTokenInformation(raw, TokenUser, ptr::null_mut(), 0, &mut len) };
    if len == 0 {
        return Err(io::Error::last_os_error());
    }
    // u64 elements keep the buffer aligned for TOKEN_USER.
    let mut buf = vec![0u64; (len as usize).div_ceil(8)];
    // SAFETY: `buf` holds at least `len` writable bytes.
    let ok = unsafe { GetTokenInformation(raw, TokenUser, buf.as_mut_ptr().cast(), len, &mut len) };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the call filled `buf` with a TOKEN_USER (aligned, see above)
    // whose SID points into `buf`, alive until the end of this function.
    let user = unsafe { &*(buf.as_ptr() as *const TOKEN_USER) };
    let mut text: *mut u16 = ptr::null_mut();
    // SAFETY: the SID is valid; `text` receives a LocalAlloc'd string.
    if unsafe { ConvertSidToStringSidW(user.User.Sid, &mut text) } == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a NUL-terminated UTF-16 string from Windows, freed once.
    let sid = unsafe { from_wide(text) };
    // SAFETY: as above.
    unsafe { LocalFree(text.cast()) };
    Ok(sid)
}

fn to_wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(Some(0)).collect()
}

/// Copies a NUL-terminated UTF-16 string.
///
/// # Safety
/// `p` must point to a NUL-terminated UTF-16 string.
unsafe fn from_wide(p: *const u16) -> String {
    let mut n = 0;
    // SAFETY: the caller promises a terminating NUL within the string.
    while unsafe { *p.add(n) } != 0 {
        n += 1;
    }
    // SAFETY: the `n` elements before the NUL are readable.
    String::from_utf16_lossy(unsafe { std::slice::from_raw_parts(p, n) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_map_to_dacls() {
        let u = "S-1-5-21-1-2-3-1000";
        assert_eq!(
            sddl_for_mode(u, 0o660),
            "D:P(A;;GA;;;S-1-5-21-1-2-3-1000)(A;;GA;;;BA)(A;;GA;;;SY)"
        );
        assert_eq!(sddl_for_mode(u, 0o600), sddl_for_mode(u, 0o660));
        assert!(sddl_for_mode(u, 0o666).ends_with("(A;;0x12019b;;;AU)"));
        assert!(sddl_for_mode(u, 0o662).ends_with("(A;;0x12019b;;;AU)"));
        // Read alone is not enough to talk to the daemon.
        assert!(!sddl_for_mode(u, 0o664).contains("AU"));
    }

    #[test]
    fn current_user_has_a_sid_and_descriptors_parse() {
        let sid = current_user_sid().unwrap();
        assert!(sid.starts_with("S-1-"), "{sid}");
        let d = Descriptor::for_mode(0o666).unwrap();
        assert!(d.sddl().contains(&sid));
        assert!(Descriptor::from_sddl("not sddl").is_err());
    }
}
