//! The AMX block kernel (TDPBF16PS on 16 × 16 f32 tiles), for Sapphire Rapids and later
//! Xeons. The tile instructions have no stable intrinsics, so they are written as inline
//! assembly.
//!
//! A 32 × 32 output block is four accumulator tiles (tmm0–tmm3). Each step of 32 along the
//! inner dimension loads two tiles of `a` rows (tmm4: rows 0–15, tmm5: rows 16–31, 32 bf16
//! each) and two of `b`'s pair rows (tmm6: columns 0–15, tmm7: columns 16–31, 16 pair rows
//! each) and issues four TDPBF16PS.
//!
//! Linux keeps the tile data state off until a process asks for it
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`); [`available`] asks once and
//! reports AMX only if the kernel granted it.

use super::BLOCK;

/// Whether the CPU has AMX-TILE and AMX-BF16 and Linux granted this process the tile state.
pub fn available() -> bool {
    static GRANTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *GRANTED.get_or_init(detect_and_request)
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn detect_and_request() -> bool {
    /// CPUID.(EAX=7, ECX=0):EDX bits of AMX-BF16 and AMX-TILE.
    const AMX_BF16: u32 = 1 << 22;
    const AMX_TILE: u32 = 1 << 24;
    /// arch_prctl's request for permission to use an extended state component.
    const ARCH_REQ_XCOMP_PERM: libc::c_ulong = 0x1023;
    /// The XSAVE component of the tile data.
    const XFEATURE_XTILEDATA: libc::c_ulong = 18;
    // CPUID leaf 0 is always valid; leaf 7 only where leaf 0 reports it.
    let max_leaf = std::arch::x86_64::__cpuid(0).eax;
    let leaf7 = if max_leaf >= 7 { std::arch::x86_64::__cpuid_count(7, 0).edx } else { 0 };
    if max_leaf < 7 || leaf7 & (AMX_BF16 | AMX_TILE) != AMX_BF16 | AMX_TILE {
        return false;
    }
    // SAFETY: a plain syscall with integer arguments; it changes only this process's
    // permission to use the tile state.
    let rc = unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) };
    rc == 0
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn detect_and_request() -> bool {
    false
}

/// The tile configuration: palette 1, eight tiles of 16 rows × 64 bytes.
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    bytes_per_row: [u16; 16],
    rows: [u8; 16],
}

impl TileConfig {
    const EIGHT_FULL_TILES: TileConfig = {
        let mut bytes_per_row = [0u16; 16];
        let mut rows = [0u8; 16];
        let mut t = 0;
        while t < 8 {
            bytes_per_row[t] = 64;
            rows[t] = 16;
            t += 1;
        }
        TileConfig { palette: 1, start_row: 0, reserved: [0; 14], bytes_per_row, rows }
    };
}

/// `acc = a_rows · b_panel` for one block from the packed layouts ([`super::pack`]).
///
/// Panics unless [`available`]: callers dispatch on it.
pub fn block(a_rows: &[u16], b_panel: &[u16], kp: usize, acc: &mut [f32; BLOCK * BLOCK]) {
    assert!(available(), "AMX kernel called without AMX tile permission");
    assert!(a_rows.len() >= BLOCK * kp && b_panel.len() >= BLOCK * kp && kp.is_multiple_of(BLOCK));
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AMX is present and granted (asserted above); every tile load reads 16 rows of
    // 64 bytes inside the slices (a: rows of kp bf16 at kp·2-byte strides, 32 rows; b: pair
    // rows of 128 bytes, kp / 2 of them), and the stores write the 32 × 32 f32 of `acc`.
    unsafe {
        block_x86(a_rows.as_ptr(), b_panel.as_ptr(), kp, acc.as_mut_ptr())
    }
}

#[cfg(target_arch = "x86_64")]
unsafe fn block_x86(a: *const u16, b: *const u16, kp: usize, acc: *mut f32) {
    use std::arch::asm;
    let config = TileConfig::EIGHT_FULL_TILES;
    let a_stride = kp * 2;
    let b_stride = 4 * BLOCK;
    asm!(
        "ldtilecfg [{cfg}]",
        "tilezero tmm0",
        "tilezero tmm1",
        "tilezero tmm2",
        "tilezero tmm3",
        cfg = in(reg) &config,
        options(nostack, readonly),
    );
    let a_lower_half = a.add(16 * kp);
    for step in 0..kp / BLOCK {
        let k0 = step * BLOCK;
        let (a0, a1) = (a.add(k0), a_lower_half.add(k0));
        let b0 = b.add((k0 / 2) * 2 * BLOCK);
        let b1 = b0.add(BLOCK);
        asm!(
            "tileloadd tmm4, [{a0} + {sa}*1]",
            "tileloadd tmm5, [{a1} + {sa}*1]",
            "tileloadd tmm6, [{b0} + {sb}*1]",
            "tileloadd tmm7, [{b1} + {sb}*1]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            a0 = in(reg) a0,
            a1 = in(reg) a1,
            b0 = in(reg) b0,
            b1 = in(reg) b1,
            sa = in(reg) a_stride,
            sb = in(reg) b_stride,
            options(nostack, readonly),
        );
    }
    let out_stride = 4 * BLOCK;
    asm!(
        "tilestored [{c0} + {so}*1], tmm0",
        "tilestored [{c1} + {so}*1], tmm1",
        "tilestored [{c2} + {so}*1], tmm2",
        "tilestored [{c3} + {so}*1], tmm3",
        "tilerelease",
        c0 = in(reg) acc,
        c1 = in(reg) acc.add(16),
        c2 = in(reg) acc.add(16 * BLOCK),
        c3 = in(reg) acc.add(16 * BLOCK + 16),
        so = in(reg) out_stride,
        options(nostack),
    );
}
