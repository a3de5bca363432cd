//! GGUF (v2/v3) reading, dequantisation and writing.
//!
//! Layout reference: the GGUF specification in the ggml repository. Every size
//! read from a header is checked against the bytes that remain before it drives
//! an allocation.

use std::collections::BTreeMap;

/// One metadata value of a GGUF file.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    /// `GGUF_TYPE_UINT8`.
    U8(u8),
    /// `GGUF_TYPE_INT8`.
    I8(i8),
    /// `GGUF_TYPE_UINT16`.
    U16(u16),
    /// `GGUF_TYPE_INT16`.
    I16(i16),
    /// `GGUF_TYPE_UINT32`.
    U32(u32),
    /// `GGUF_TYPE_INT32`.
    I32(i32),
    /// `GGUF_TYPE_FLOAT32`.
    F32(f32),
    /// `GGUF_TYPE_BOOL`.
    Bool(bool),
    /// `GGUF_TYPE_STRING`.
    String(String),
    /// `GGUF_TYPE_ARRAY` (elements all of one type).
    Array(Vec<GgufValue>),
    /// `GGUF_TYPE_UINT64`.
    U64(u64),
    /// `GGUF_TYPE_INT64`.
    I64(i64),
    /// `GGUF_TYPE_FLOAT64`.
    F64(f64),
}

/// The key-value metadata of a GGUF file, sorted by key.
pub type GgufMetadata = BTreeMap<String, GgufValue>;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::thread;

use half::f16;
use memmap2::Mmap;

/// The four bytes every GGUF file starts with.
const MAGIC: [u8; 4] = *b"GGUF";
/// The alignment of the data section when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The most dimensions a ggml tensor can have (`GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;
/// How deeply metadata arrays may nest inside one another.
const MAX_ARRAY_DEPTH: u32 = 4;
/// Elements per super-block of the k-quant formats (`QK_K`).
const QK_K: usize = 256;

/// The smallest encoding of one metadata entry: key length, value type and a one-byte value.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;
/// The smallest encoding of one tensor info: name length, dimension count, type and offset.
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 4 + 8;

// Metadata value type ids of the GGUF format.
const T_U8: u32 = 0;
const T_I8: u32 = 1;
const T_U16: u32 = 2;
const T_I16: u32 = 3;
const T_U32: u32 = 4;
const T_I32: u32 = 5;
const T_F32: u32 = 6;
const T_BOOL: u32 = 7;
const T_STRING: u32 = 8;
const T_ARRAY: u32 = 9;
const T_U64: u32 = 10;
const T_I64: u32 = 11;
const T_F64: u32 = 12;

impl GgufValue {
    /// The value as an unsigned integer, if it is an integer of any width that is not negative.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U8(v) => Some(v.into()),
            GgufValue::U16(v) => Some(v.into()),
            GgufValue::U32(v) => Some(v.into()),
            GgufValue::U64(v) => Some(v),
            GgufValue::I8(v) => u64::try_from(v).ok(),
            GgufValue::I16(v) => u64::try_from(v).ok(),
            GgufValue::I32(v) => u64::try_from(v).ok(),
            GgufValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a signed integer, if it is an integer of any width that fits in `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            GgufValue::I8(v) => Some(v.into()),
            GgufValue::I16(v) => Some(v.into()),
            GgufValue::I32(v) => Some(v.into()),
            GgufValue::I64(v) => Some(v),
            GgufValue::U8(v) => Some(v.into()),
            GgufValue::U16(v) => Some(v.into()),
            GgufValue::U32(v) => Some(v.into()),
            GgufValue::U64(v) => i64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float, if it is a float or an integer (large integers are rounded).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(v) => Some(v.into()),
            GgufValue::F64(v) => Some(v),
            GgufValue::U64(v) => Some(v as f64),
            GgufValue::I64(v) => Some(v as f64),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    /// The value as a string slice, if it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The elements of the value, if it is an array.
    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            GgufValue::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The value as a boolean, if it is a boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            GgufValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// A short name of the value's type, such as `"u32"`, `"string"` or `"array"`.
    pub fn type_name(&self) -> &'static str {
        match self {
            GgufValue::U8(_) => "u8",
            GgufValue::I8(_) => "i8",
            GgufValue::U16(_) => "u16",
            GgufValue::I16(_) => "i16",
            GgufValue::U32(_) => "u32",
            GgufValue::I32(_) => "i32",
            GgufValue::F32(_) => "f32",
            GgufValue::Bool(_) => "bool",
            GgufValue::String(_) => "string",
            GgufValue::Array(_) => "array",
            GgufValue::U64(_) => "u64",
            GgufValue::I64(_) => "i64",
            GgufValue::F64(_) => "f64",
        }
    }

    /// The GGUF type id of the value.
    fn type_id(&self) -> u32 {
        match self {
            GgufValue::U8(_) => T_U8,
            GgufValue::I8(_) => T_I8,
            GgufValue::U16(_) => T_U16,
            GgufValue::I16(_) => T_I16,
            GgufValue::U32(_) => T_U32,
            GgufValue::I32(_) => T_I32,
            GgufValue::F32(_) => T_F32,
            GgufValue::Bool(_) => T_BOOL,
            GgufValue::String(_) => T_STRING,
            GgufValue::Array(_) => T_ARRAY,
            GgufValue::U64(_) => T_U64,
            GgufValue::I64(_) => T_I64,
            GgufValue::F64(_) => T_F64,
        }
    }

    /// Describes the value for an error message without printing long contents.
    fn describe(&self) -> String {
        match self {
            GgufValue::String(_) => "a string".to_owned(),
            GgufValue::Array(items) => format!("an array of {} values", items.len()),
            GgufValue::Bool(b) => format!("bool {b}"),
            GgufValue::F32(v) => format!("f32 {v}"),
            GgufValue::F64(v) => format!("f64 {v}"),
            other => match (other.as_i64(), other.as_u64()) {
                (Some(v), _) => format!("{} {v}", other.type_name()),
                (None, Some(v)) => format!("{} {v}", other.type_name()),
                (None, None) => other.type_name().to_owned(),
            },
        }
    }
}

/// A ggml tensor element type, with the numbering used in GGUF files.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// IEEE half-precision float.
    F16,
    /// 4-bit blocks of 32 with an f16 scale.
    Q4_0,
    /// 4-bit blocks of 32 with an f16 scale and minimum.
    Q4_1,
    /// 5-bit blocks of 32 with an f16 scale.
    Q5_0,
    /// 5-bit blocks of 32 with an f16 scale and minimum.
    Q5_1,
    /// 8-bit blocks of 32 with an f16 scale.
    Q8_0,
    /// 8-bit blocks of 32 with f32 scale and sum (an activation format; not dequantisable).
    Q8_1,
    /// 2-bit k-quant super-blocks of 256.
    Q2_K,
    /// 3-bit k-quant super-blocks of 256.
    Q3_K,
    /// 4-bit k-quant super-blocks of 256.
    Q4_K,
    /// 5-bit k-quant super-blocks of 256.
    Q5_K,
    /// 6-bit k-quant super-blocks of 256.
    Q6_K,
    /// 8-bit k-quant super-blocks of 256 with an f32 scale.
    Q8_K,
    /// Importance-matrix 2.06-bit quantisation (not dequantisable here).
    IQ2_XXS,
    /// Importance-matrix 2.31-bit quantisation (not dequantisable here).
    IQ2_XS,
    /// Importance-matrix 3.06-bit quantisation (not dequantisable here).
    IQ3_XXS,
    /// Importance-matrix 1.56-bit quantisation (not dequantisable here).
    IQ1_S,
    /// Non-linear 4-bit blocks of 32 (not dequantisable here).
    IQ4_NL,
    /// Importance-matrix 3.44-bit quantisation (not dequantisable here).
    IQ3_S,
    /// Importance-matrix 2.5-bit quantisation (not dequantisable here).
    IQ2_S,
    /// Non-linear 4.25-bit super-blocks (not dequantisable here).
    IQ4_XS,
    /// 8-bit integer (not dequantisable here).
    I8,
    /// 16-bit integer (not dequantisable here).
    I16,
    /// 32-bit integer (not dequantisable here).
    I32,
    /// 64-bit integer (not dequantisable here).
    I64,
    /// 64-bit float (not dequantisable here).
    F64,
    /// Importance-matrix 1.75-bit quantisation (not dequantisable here).
    IQ1_M,
    /// bfloat16.
    BF16,
    /// Ternary 1.69-bit quantisation (not dequantisable here).
    TQ1_0,
    /// Ternary 2.06-bit quantisation (not dequantisable here).
    TQ2_0,
    /// Microscaling 4-bit float blocks of 32 (not dequantisable here).
    MXFP4,
}

impl GgmlType {
    /// Every type this module knows, in id order.
    pub const ALL: [GgmlType; 32] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q8_1,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::Q8_K,
        GgmlType::IQ2_XXS,
        GgmlType::IQ2_XS,
        GgmlType::IQ3_XXS,
        GgmlType::IQ1_S,
        GgmlType::IQ4_NL,
        GgmlType::IQ3_S,
        GgmlType::IQ2_S,
        GgmlType::IQ4_XS,
        GgmlType::I8,
        GgmlType::I16,
        GgmlType::I32,
        GgmlType::I64,
        GgmlType::F64,
        GgmlType::IQ1_M,
        GgmlType::BF16,
        GgmlType::TQ1_0,
        GgmlType::TQ2_0,
        GgmlType::MXFP4,
    ];

    /// The id, name, elements per block and bytes per block of the type.
    const fn spec(self) -> (u32, &'static str, usize, usize) {
        match self {
            GgmlType::F32 => (0, "f32", 1, 4),
            GgmlType::F16 => (1, "f16", 1, 2),
            GgmlType::Q4_0 => (2, "q4_0", 32, 18),
            GgmlType::Q4_1 => (3, "q4_1", 32, 20),
            GgmlType::Q5_0 => (6, "q5_0", 32, 22),
            GgmlType::Q5_1 => (7, "q5_1", 32, 24),
            GgmlType::Q8_0 => (8, "q8_0", 32, 34),
            GgmlType::Q8_1 => (9, "q8_1", 32, 40),
            GgmlType::Q2_K => (10, "q2_K", QK_K, 84),
            GgmlType::Q3_K => (11, "q3_K", QK_K, 110),
            GgmlType::Q4_K => (12, "q4_K", QK_K, 144),
            GgmlType::Q5_K => (13, "q5_K", QK_K, 176),
            GgmlType::Q6_K => (14, "q6_K", QK_K, 210),
            GgmlType::Q8_K => (15, "q8_K", QK_K, 292),
            GgmlType::IQ2_XXS => (16, "iq2_xxs", QK_K, 66),
            GgmlType::IQ2_XS => (17, "iq2_xs", QK_K, 74),
            GgmlType::IQ3_XXS => (18, "iq3_xxs", QK_K, 98),
            GgmlType::IQ1_S => (19, "iq1_s", QK_K, 50),
            GgmlType::IQ4_NL => (20, "iq4_nl", 32, 18),
            GgmlType::IQ3_S => (21, "iq3_s", QK_K, 110),
            GgmlType::IQ2_S => (22, "iq2_s", QK_K, 82),
            GgmlType::IQ4_XS => (23, "iq4_xs", QK_K, 136),
            GgmlType::I8 => (24, "i8", 1, 1),
            GgmlType::I16 => (25, "i16", 1, 2),
            GgmlType::I32 => (26, "i32", 1, 4),
            GgmlType::I64 => (27, "i64", 1, 8),
            GgmlType::F64 => (28, "f64", 1, 8),
            GgmlType::IQ1_M => (29, "iq1_m", QK_K, 56),
            GgmlType::BF16 => (30, "bf16", 1, 2),
            GgmlType::TQ1_0 => (34, "tq1_0", QK_K, 54),
            GgmlType::TQ2_0 => (35, "tq2_0", QK_K, 66),
            GgmlType::MXFP4 => (39, "mxfp4", 32, 17),
        }
    }

    /// The type with the given GGUF id, or `None` for ids that are unknown or were retired.
    pub fn from_id(id: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.id() == id)
    }

    /// The type with the given ggml name, compared without regard to case (`"Q4_K"`, `"q4_k"`).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name().eq_ignore_ascii_case(name))
    }

    /// The GGUF id of the type.
    pub fn id(self) -> u32 {
        self.spec().0
    }

    /// The ggml name of the type, such as `"q4_K"`.
    pub fn name(self) -> &'static str {
        self.spec().1
    }

    /// The number of elements in one block.
    pub fn block_size(self) -> usize {
        self.spec().2
    }

    /// The number of bytes in one block.
    pub fn type_size(self) -> usize {
        self.spec().3
    }

    /// Whether [`dequantize`] supports the type.
    pub fn is_dequantizable(self) -> bool {
        kernel(self).is_some()
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The description of one tensor in a GGUF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufTensorInfo {
    /// The tensor name, such as `blk.0.attn_q.weight`.
    pub name: String,
    /// The dimensions as stored in the file: `dims[0]` is the contiguous (fastest-varying) axis.
    pub dims: Vec<u64>,
    /// The element type.
    pub ggml_type: GgmlType,
    /// The offset of the tensor's data relative to the start of the data section.
    pub offset: u64,
}

impl GgufTensorInfo {
    /// The number of elements (1 for a tensor without dimensions).
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().fold(1u64, |acc, &d| acc.saturating_mul(d))
    }

    /// The shape in row-major (PyTorch) order, which is `dims` reversed.
    pub fn shape(&self) -> Vec<usize> {
        self.dims
            .iter()
            .rev()
            .map(|&d| usize::try_from(d).unwrap_or(usize::MAX))
            .collect()
    }

    /// The number of bytes of the tensor's data.
    pub fn n_bytes(&self) -> u64 {
        let blocks = self.n_elements() / self.ggml_type.block_size() as u64;
        blocks.saturating_mul(self.ggml_type.type_size() as u64)
    }
}

/// Why a buffer could not be dequantised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DequantError {
    /// The type has no dequantisation routine here.
    #[error("ggml type {0} cannot be dequantised")]
    Unsupported(GgmlType),
    /// The element count is not a whole number of blocks.
    #[error("{n_elements} elements is not a multiple of the {ty} block size {block_size}")]
    PartialBlock {
        /// The element type.
        ty: GgmlType,
        /// The requested number of elements.
        n_elements: usize,
        /// The number of elements per block of `ty`.
        block_size: usize,
    },
    /// The byte count does not match the element count.
    #[error("{n_elements} {ty} elements take {expected} bytes but {actual} were given")]
    WrongLength {
        /// The element type.
        ty: GgmlType,
        /// The requested number of elements.
        n_elements: usize,
        /// The number of bytes those elements occupy.
        expected: u64,
        /// The number of bytes supplied.
        actual: usize,
    },
}

/// An error reading, interpreting or writing a GGUF file. Every message is one line that
/// starts with the file's path.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be opened, mapped, read or written.
    #[error("{}: cannot {action}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being attempted, such as "open" or "write".
        action: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// The file does not start with the GGUF magic.
    #[error("{}: not a GGUF file (bad magic 0x{magic:08x})", path.display())]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The first four bytes, read in file order as a big-endian number.
        magic: u32,
    },
    /// The file has a GGUF version other than 2 or 3.
    #[error("{}: unsupported GGUF version {version} (only versions 2 and 3 are supported){hint}", path.display())]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version as read.
        version: u32,
        /// Extra guidance, such as a note that the file looks big-endian; may be empty.
        hint: &'static str,
    },
    /// A header structure runs past the end of the file.
    #[error("{}: truncated: {what} needs {needed} bytes at byte {offset} but the file has {len} bytes", path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// The structure being read.
        what: String,
        /// Where it starts.
        offset: u64,
        /// How many bytes it needs.
        needed: u64,
        /// The file's length.
        len: u64,
    },
    /// A tensor's data runs past the end of the file.
    #[error("{}: truncated: tensor '{name}' data ends at byte {end} but the file has {len} bytes", path.display())]
    TensorOutOfBounds {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// The absolute offset just past the tensor's data (saturated on overflow).
        end: u64,
        /// The file's length.
        len: u64,
    },
    /// A count in the file is larger than the rest of the file could possibly encode.
    #[error("{}: {claim} but the file can hold at most {max}", path.display())]
    TooMany {
        /// The file.
        path: PathBuf,
        /// What was claimed, such as "header claims 4294967295 tensors".
        claim: String,
        /// The most the remaining bytes could encode.
        max: u64,
    },
    /// A tensor has a type id this module does not know.
    #[error("{}: tensor '{name}' has unknown ggml type {id}", path.display())]
    UnknownType {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// The type id as read.
        id: u32,
    },
    /// The file is structurally invalid in some other way.
    #[error("{}: {problem}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A required metadata key is absent.
    #[error("{}: metadata key '{key}' is missing", path.display())]
    MissingKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// A metadata value has the wrong type or is out of range.
    #[error("{}: metadata key '{key}' holds {found}, expected {expected}", path.display())]
    WrongType {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// A description of the value found.
        found: String,
        /// The kind of value wanted.
        expected: &'static str,
    },
    /// A requested tensor is absent.
    #[error("{}: no tensor named '{name}'", path.display())]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
    },
    /// A tensor could not be dequantised.
    #[error("{}: tensor '{name}': {source}", path.display())]
    Dequant {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// The underlying error.
        source: DequantError,
    },
}

/// The bytes behind a [`GgufFile`].
enum Backing {
    /// A read-only memory map of the file.
    Mapped(Mmap),
    /// Bytes held in memory.
    Owned(Vec<u8>),
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Mapped(m) => m,
            Backing::Owned(v) => v,
        }
    }
}

/// A parsed GGUF file whose tensor data stays in the (usually memory-mapped) file.
pub struct GgufFile {
    /// The GGUF version (2 or 3).
    pub version: u32,
    /// The key-value metadata.
    pub metadata: GgufMetadata,
    /// The tensor descriptions in file order.
    pub tensors: Vec<GgufTensorInfo>,
    path: PathBuf,
    backing: Backing,
    data_offset: u64,
    alignment: u64,
    index: HashMap<String, usize>,
}

impl fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata_entries", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("data_offset", &self.data_offset)
            .field("alignment", &self.alignment)
            .finish()
    }
}

impl GgufFile {
    /// Memory-maps and parses the file at `path`; tensor data is read lazily from the map.
    pub fn open(path: &Path) -> Result<Self, GgufError> {
        let io_err = |action, source| GgufError::Io {
            path: path.to_owned(),
            action,
            source,
        };
        let file = File::open(path).map_err(|e| io_err("open", e))?;
        // SAFETY: the map is read-only and lives as long as `self`. Another process truncating
        // or rewriting the file while it is mapped is outside what this type can guard against,
        // as for every memory-mapped reader.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| io_err("memory-map", e))?;
        Self::from_backing(Backing::Mapped(map), path)
    }

    /// Parses a GGUF file held in memory; `path_for_errors` only labels error messages.
    pub fn from_bytes(bytes: Vec<u8>, path_for_errors: &Path) -> Result<Self, GgufError> {
        Self::from_backing(Backing::Owned(bytes), path_for_errors)
    }

    fn from_backing(backing: Backing, path: &Path) -> Result<Self, GgufError> {
        let parsed = parse(backing.bytes(), path)?;
        Ok(GgufFile {
            version: parsed.version,
            metadata: parsed.metadata,
            tensors: parsed.tensors,
            path: path.to_owned(),
            backing,
            data_offset: parsed.data_offset,
            alignment: parsed.alignment,
            index: parsed.index,
        })
    }

    /// The path the file was opened from (or the label given to [`GgufFile::from_bytes`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The absolute byte offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// The alignment of the data section and of every tensor in it.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// The description of the named tensor.
    pub fn tensor_info(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// The raw bytes of a tensor of this file. An `info` that does not fit the file (one from
    /// another file) yields an empty slice.
    pub fn tensor_bytes(&self, info: &GgufTensorInfo) -> &[u8] {
        let bytes = self.backing.bytes();
        let range = self
            .data_offset
            .checked_add(info.offset)
            .and_then(|start| Some((start, start.checked_add(info.n_bytes())?)))
            .and_then(|(s, e)| Some(usize::try_from(s).ok()?..usize::try_from(e).ok()?));
        range.and_then(|r| bytes.get(r)).unwrap_or(&[])
    }

    /// Dequantises the named tensor to f32 values in row-major order.
    pub fn dequantize(&self, name: &str) -> Result<Vec<f32>, GgufError> {
        let info = self.tensor_info(name).ok_or_else(|| GgufError::MissingTensor {
            path: self.path.clone(),
            name: name.to_owned(),
        })?;
        let wrap = |source| GgufError::Dequant {
            path: self.path.clone(),
            name: name.to_owned(),
            source,
        };
        // Element counts were bounded by the file size when parsing, so they fit in usize
        // wherever the file could be mapped; the fallback only guards foreign infos.
        let n = usize::try_from(info.n_elements()).unwrap_or(usize::MAX);
        dequantize(info.ggml_type, self.tensor_bytes(info), n).map_err(wrap)
    }

    /// The metadata value under `key`.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    fn missing(&self, key: &str) -> GgufError {
        GgufError::MissingKey {
            path: self.path.clone(),
            key: key.to_owned(),
        }
    }

    fn wrong(&self, key: &str, value: &GgufValue, expected: &'static str) -> GgufError {
        GgufError::WrongType {
            path: self.path.clone(),
            key: key.to_owned(),
            found: value.describe(),
            expected,
        }
    }

    /// Looks up `key` and converts it, failing only when it is present but does not convert.
    fn typed<'a, T>(
        &'a self,
        key: &str,
        expected: &'static str,
        convert: impl FnOnce(&'a GgufValue) -> Option<T>,
    ) -> Result<Option<T>, GgufError> {
        match self.metadata.get(key) {
            None => Ok(None),
            Some(v) => convert(v).map(Some).ok_or_else(|| self.wrong(key, v, expected)),
        }
    }

    /// The string under `key`; absent or of another type is an error.
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        self.opt_str(key)?.ok_or_else(|| self.missing(key))
    }

    /// The integer under `key` if it fits in `u32` (any integer type is accepted).
    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        self.opt_u32(key)?.ok_or_else(|| self.missing(key))
    }

    /// The integer under `key` if it fits in `u64` (any integer type is accepted).
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.opt_u64(key)?.ok_or_else(|| self.missing(key))
    }

    /// The number under `key` as `f32` (floats and integers are accepted).
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        self.opt_f32(key)?.ok_or_else(|| self.missing(key))
    }

    /// The boolean under `key`.
    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        self.opt_bool(key)?.ok_or_else(|| self.missing(key))
    }

    /// The elements of the array under `key`.
    pub fn get_array(&self, key: &str) -> Result<&[GgufValue], GgufError> {
        self.opt_array(key)?.ok_or_else(|| self.missing(key))
    }

    /// The array of strings under `key`.
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>, GgufError> {
        self.opt_str_array(key)?.ok_or_else(|| self.missing(key))
    }

    /// Like [`GgufFile::get_str`], but an absent key gives `Ok(None)`.
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        self.typed(key, "a string", GgufValue::as_str)
    }

    /// Like [`GgufFile::get_u32`], but an absent key gives `Ok(None)`.
    pub fn opt_u32(&self, key: &str) -> Result<Option<u32>, GgufError> {
        self.typed(key, "an integer that fits in u32", |v| u32::try_from(v.as_u64()?).ok())
    }

    /// Like [`GgufFile::get_u64`], but an absent key gives `Ok(None)`.
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        self.typed(key, "a non-negative integer", GgufValue::as_u64)
    }

    /// Like [`GgufFile::get_f32`], but an absent key gives `Ok(None)`.
    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>, GgufError> {
        self.typed(key, "a number", |v| v.as_f64().map(|x| x as f32))
    }

    /// Like [`GgufFile::get_bool`], but an absent key gives `Ok(None)`.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        self.typed(key, "a bool", GgufValue::as_bool)
    }

    /// Like [`GgufFile::get_array`], but an absent key gives `Ok(None)`.
    pub fn opt_array(&self, key: &str) -> Result<Option<&[GgufValue]>, GgufError> {
        self.typed(key, "an array", GgufValue::as_array)
    }

    /// Like [`GgufFile::get_str_array`], but an absent key gives `Ok(None)`.
    pub fn opt_str_array(&self, key: &str) -> Result<Option<Vec<&str>>, GgufError> {
        self.typed(key, "an array of strings", |v| {
            v.as_array()?.iter().map(GgufValue::as_str).collect()
        })
    }
}

/// The result of parsing a header.
struct Parsed {
    version: u32,
    metadata: GgufMetadata,
    tensors: Vec<GgufTensorInfo>,
    index: HashMap<String, usize>,
    data_offset: u64,
    alignment: u64,
}

/// A bounds-checked little-endian reader over the file's bytes. `ctx` names the structure
/// being read so that a truncation error can say what was cut off.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
    ctx: String,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn malformed(&self, problem: String) -> GgufError {
        GgufError::Malformed {
            path: self.path.to_owned(),
            problem,
        }
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], GgufError> {
        if n > self.left() as u64 {
            return Err(GgufError::Truncated {
                path: self.path.to_owned(),
                what: self.ctx.clone(),
                offset: self.pos as u64,
                needed: n,
                len: self.buf.len() as u64,
            });
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.buf[start..self.pos])
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], GgufError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N as u64)?);
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, GgufError> {
        self.fixed().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, GgufError> {
        self.fixed().map(u64::from_le_bytes)
    }

    /// Reads a length-prefixed UTF-8 string.
    fn string(&mut self) -> Result<String, GgufError> {
        let len = self.u64()?;
        let bytes = self.take(len)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(self.malformed(format!("{} contains a string that is not valid UTF-8", self.ctx))),
        }
    }

    /// Reads a value of metadata type `ty`; `key` names it in errors.
    fn value(&mut self, ty: u32, depth: u32, key: &str) -> Result<GgufValue, GgufError> {
        Ok(match ty {
            T_U8 => GgufValue::U8(u8::from_le_bytes(self.fixed()?)),
            T_I8 => GgufValue::I8(i8::from_le_bytes(self.fixed()?)),
            T_U16 => GgufValue::U16(u16::from_le_bytes(self.fixed()?)),
            T_I16 => GgufValue::I16(i16::from_le_bytes(self.fixed()?)),
            T_U32 => GgufValue::U32(u32::from_le_bytes(self.fixed()?)),
            T_I32 => GgufValue::I32(i32::from_le_bytes(self.fixed()?)),
            T_F32 => GgufValue::F32(f32::from_le_bytes(self.fixed()?)),
            T_U64 => GgufValue::U64(u64::from_le_bytes(self.fixed()?)),
            T_I64 => GgufValue::I64(i64::from_le_bytes(self.fixed()?)),
            T_F64 => GgufValue::F64(f64::from_le_bytes(self.fixed()?)),
            T_BOOL => match self.fixed::<1>()?[0] {
                0 => GgufValue::Bool(false),
                1 => GgufValue::Bool(true),
                b => {
                    return Err(self.malformed(format!("metadata '{key}' has invalid bool byte {b}")));
                }
            },
            T_STRING => GgufValue::String(self.string()?),
            T_ARRAY => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.malformed(format!(
                        "metadata '{key}' nests arrays more than {MAX_ARRAY_DEPTH} deep"
                    )));
                }
                let elem_ty = self.u32()?;
                let Some(min) = min_value_bytes(elem_ty) else {
                    return Err(self.malformed(format!("metadata '{key}' is an array of unknown value type {elem_ty}")));
                };
                let len = self.u64()?;
                let max = self.left() as u64 / min;
                if len > max {
                    return Err(GgufError::TooMany {
                        path: self.path.to_owned(),
                        claim: format!("metadata '{key}' claims an array of {len} elements"),
                        max,
                    });
                }
                // The length is bounded by the remaining bytes; the reservation is capped further
                // so that a large array costs memory only as its elements are actually read.
                let mut items = Vec::with_capacity((len as usize).min(1 << 16));
                for _ in 0..len {
                    items.push(self.value(elem_ty, depth + 1, key)?);
                }
                GgufValue::Array(items)
            }
            other => {
                return Err(self.malformed(format!("metadata '{key}' has unknown value type {other}")));
            }
        })
    }
}

/// The fewest bytes a value of metadata type `ty` can occupy, or `None` for unknown types.
fn min_value_bytes(ty: u32) -> Option<u64> {
    Some(match ty {
        T_U8 | T_I8 | T_BOOL => 1,
        T_U16 | T_I16 => 2,
        T_U32 | T_I32 | T_F32 => 4,
        T_U64 | T_I64 | T_F64 | T_STRING => 8,
        T_ARRAY => 12,
        _ => return None,
    })
}

/// Parses and validates the header, metadata and tensor infos of a GGUF file.
fn parse(buf: &[u8], path: &Path) -> Result<Parsed, GgufError> {
    let mut r = Reader {
        buf,
        pos: 0,
        path,
        ctx: "the header".to_owned(),
    };
    let magic = r.fixed::<4>()?;
    if magic != MAGIC {
        return Err(GgufError::BadMagic {
            path: path.to_owned(),
            magic: u32::from_be_bytes(magic),
        });
    }
    let version = r.u32()?;
    if version != 2 && version != 3 {
        let hint = if matches!(version.swap_bytes(), 2 | 3) {
            "; the file looks big-endian, which is not supported"
        } else {
            ""
        };
        return Err(GgufError::UnsupportedVersion {
            path: path.to_owned(),
            version,
            hint,
        });
    }
    let n_tensors = r.u64()?;
    let n_kv = r.u64()?;
    let left = r.left() as u64;
    let max_kv = left / MIN_KV_BYTES;
    if n_kv > max_kv {
        return Err(GgufError::TooMany {
            path: path.to_owned(),
            claim: format!("header claims {n_kv} metadata entries"),
            max: max_kv,
        });
    }
    let max_tensors = (left - n_kv * MIN_KV_BYTES) / MIN_TENSOR_INFO_BYTES;
    if n_tensors > max_tensors {
        return Err(GgufError::TooMany {
            path: path.to_owned(),
            claim: format!("header claims {n_tensors} tensors"),
            max: max_tensors,
        });
    }

    let mut metadata = GgufMetadata::new();
    for i in 0..n_kv {
        r.ctx = format!("the key of metadata entry {i}");
        let key = r.string()?;
        r.ctx = format!("metadata '{key}'");
        let ty = r.u32()?;
        let value = r.value(ty, 0, &key)?;
        if metadata.contains_key(&key) {
            return Err(r.malformed(format!("duplicate metadata key '{key}'")));
        }
        metadata.insert(key, value);
    }

    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(GgufValue::U32(a)) if a.is_power_of_two() => u64::from(*a),
        Some(GgufValue::U32(a)) => {
            return Err(r.malformed(format!("general.alignment {a} is not a power of two")));
        }
        Some(other) => {
            return Err(r.malformed(format!("general.alignment holds {}, expected u32", other.describe())));
        }
    };

    // The count is bounded by the remaining bytes; the reservation is capped further.
    let reserve = (n_tensors as usize).min(1 << 16);
    let mut tensors = Vec::with_capacity(reserve);
    let mut index: HashMap<String, usize> = HashMap::with_capacity(reserve);
    for i in 0..n_tensors {
        r.ctx = format!("the name of tensor info {i}");
        let name = r.string()?;
        r.ctx = format!("tensor info '{name}'");
        let n_dims = r.u32()?;
        if n_dims as usize > MAX_DIMS {
            return Err(r.malformed(format!(
                "tensor '{name}' has {n_dims} dimensions but at most {MAX_DIMS} are allowed"
            )));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(r.u64()?);
        }
        let type_id = r.u32()?;
        let offset = r.u64()?;
        let Some(ggml_type) = GgmlType::from_id(type_id) else {
            return Err(GgufError::UnknownType {
                path: path.to_owned(),
                name,
                id: type_id,
            });
        };
        let n_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64);
        if n_elements.is_none() {
            return Err(r.malformed(format!(
                "tensor '{name}' has dimensions {dims:?} whose product overflows"
            )));
        }
        let row = dims.first().copied().unwrap_or(1);
        let block = ggml_type.block_size() as u64;
        if !row.is_multiple_of(block) {
            return Err(r.malformed(format!(
                "tensor '{name}' of type {ggml_type} has rows of {row} elements, not a multiple of the block size {block}"
            )));
        }
        if !offset.is_multiple_of(alignment) {
            return Err(r.malformed(format!(
                "tensor '{name}' has offset {offset}, which is not a multiple of the alignment {alignment}"
            )));
        }
        if index.insert(name.clone(), tensors.len()).is_some() {
            return Err(r.malformed(format!("duplicate tensor name '{name}'")));
        }
        tensors.push(GgufTensorInfo {
            name,
            dims,
            ggml_type,
            offset,
        });
    }

    let pos = r.pos as u64;
    let data_offset = pos.div_ceil(alignment) * alignment;
    let len = buf.len() as u64;
    for t in &tensors {
        // n_bytes saturates, so an absurd size fails this bound check rather than wrapping.
        let end = data_offset
            .checked_add(t.offset)
            .and_then(|s| s.checked_add(t.n_bytes()));
        match end {
            Some(end) if end <= len => {}
            _ => {
                return Err(GgufError::TensorOutOfBounds {
                    path: path.to_owned(),
                    name: t.name.clone(),
                    end: end.unwrap_or(u64::MAX),
                    len,
                });
            }
        }
    }
    Ok(Parsed {
        version,
        metadata,
        tensors,
        index,
        data_offset,
        alignment,
    })
}

// ---------------------------------------------------------------------------------------------
// Dequantisation. Each kernel converts whole blocks and follows the arithmetic of ggml's
// reference `dequantize_row_*` routines operation for operation, so results are bit-identical.
// ---------------------------------------------------------------------------------------------

/// A routine that converts as many whole blocks as `src` holds into `dst`.
type Kernel = fn(&[u8], &mut [f32]);

fn kernel(ty: GgmlType) -> Option<Kernel> {
    Some(match ty {
        GgmlType::F32 => dq_f32,
        GgmlType::F16 => dq_f16,
        GgmlType::BF16 => dq_bf16,
        GgmlType::Q4_0 => dq_q4_0,
        GgmlType::Q4_1 => dq_q4_1,
        GgmlType::Q5_0 => dq_q5_0,
        GgmlType::Q5_1 => dq_q5_1,
        GgmlType::Q8_0 => dq_q8_0,
        GgmlType::Q2_K => dq_q2_k,
        GgmlType::Q3_K => dq_q3_k,
        GgmlType::Q4_K => dq_q4_k,
        GgmlType::Q5_K => dq_q5_k,
        GgmlType::Q6_K => dq_q6_k,
        GgmlType::Q8_K => dq_q8_k,
        _ => return None,
    })
}

/// Dequantises `n_elements` values of type `ty` stored in `bytes` into a new vector.
pub fn dequantize(ty: GgmlType, bytes: &[u8], n_elements: usize) -> Result<Vec<f32>, DequantError> {
    check_dequant(ty, bytes, n_elements)?;
    let mut out = vec![0.0f32; n_elements];
    dequantize_into(ty, bytes, &mut out)?;
    Ok(out)
}

/// Dequantises `out.len()` values of type `ty` stored in `bytes` into `out`.
pub fn dequantize_into(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<(), DequantError> {
    let run = check_dequant(ty, bytes, out.len())?;
    let (bs, ts) = (ty.block_size(), ty.type_size());
    let workers = worker_count(out.len());
    if workers <= 1 {
        run(bytes, out);
        return Ok(());
    }
    let blocks_per_worker = (out.len() / bs).div_ceil(workers);
    thread::scope(|s| {
        let mut parts = bytes
            .chunks(blocks_per_worker * ts)
            .zip(out.chunks_mut(blocks_per_worker * bs));
        // The calling thread converts the first part itself.
        let first = parts.next();
        for (src, dst) in parts {
            s.spawn(move || run(src, dst));
        }
        if let Some((src, dst)) = first {
            run(src, dst);
        }
    });
    Ok(())
}

/// Validates the sizes of a dequantisation request and picks its kernel.
fn check_dequant(ty: GgmlType, bytes: &[u8], n_elements: usize) -> Result<Kernel, DequantError> {
    let run = kernel(ty).ok_or(DequantError::Unsupported(ty))?;
    let (bs, ts) = (ty.block_size(), ty.type_size());
    if !n_elements.is_multiple_of(bs) {
        return Err(DequantError::PartialBlock {
            ty,
            n_elements,
            block_size: bs,
        });
    }
    let expected = (n_elements / bs) as u64 * ts as u64;
    if expected != bytes.len() as u64 {
        return Err(DequantError::WrongLength {
            ty,
            n_elements,
            expected,
            actual: bytes.len(),
        });
    }
    Ok(run)
}

/// How many threads to use for `n` elements: one per 256Ki elements, up to the core count
/// (at most 8).
fn worker_count(n: usize) -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    let cores = *CORES.get_or_init(|| thread::available_parallelism().map_or(1, |c| c.get()).min(8));
    (n >> 18).clamp(1, cores)
}

/// Reads the little-endian f16 at byte `i` of `b` as f32.
#[inline(always)]
fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

fn dq_f32(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.as_chunks::<4>().0.iter().zip(dst.iter_mut()) {
        *y = f32::from_le_bytes(*b);
    }
}

fn dq_f16(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.as_chunks::<2>().0.iter().zip(dst.iter_mut()) {
        *y = f16::from_bits(u16::from_le_bytes(*b)).to_f32();
    }
}

fn dq_bf16(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.as_chunks::<2>().0.iter().zip(dst.iter_mut()) {
        *y = f32::from_bits(u32::from(u16::from_le_bytes(*b)) << 16);
    }
}

/// Q4_0 block: f16 d, then 16 bytes holding elements j (low nibble) and j + 16 (high nibble).
fn dq_q4_0(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.as_chunks::<18>().0.iter().zip(dst.as_chunks_mut::<32>().0) {
        let d = f16_at(b, 0);
        for j in 0..16 {
            let q = b[2 + j];
            y[j] = ((q & 0x0F) as i32 - 8) as f32 * d;
            y[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
        }
    }
}

/// Q4_1 block: f16 d, f16 m, then 16 bytes of nibbles laid out as in Q4_0.
fn dq_q4_1(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.as_chunks::<20>().0.iter().zip(dst.as_chunks_mut::<32>().0) {
        let d = f16_at(b, 0);
        let m = f16_at(b, 2);
        for j in 0..16 {
            let q = b[4 + j];
            y[j] = (q & 0x0F) as f32 * d + m;
            y[j + 16] = (q >> 4) as f32 * d + m;
        }
    }
}

/// Q5_0 block: f16 d, a 32-bit word of fifth bits (bit j for element j), then 16 bytes of nibbles.
fn dq_q5_0(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.as_chunks::<22>().0.iter().zip(dst.as_chunks_mut::<32>().0) {
        let d = f16_at(b, 0);
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        for j in 0..16 {
            let q = b[6 + j];
            let h0 = ((qh >> j) << 4) & 0x10;
            let h1 = (qh >> (j + 12)) & 0x10;
            y[j] = ((u32::from(q & 0x0F) | h0) as i32 - 16) as f32 * d;
            y[j + 16] = ((u32::from(q >> 4) | h1) as i32 - 16) as f32 * d;
        }
    }
}

/// Q5_1 block: f16 d, f16 m, the 32-bit word of fifth bits, then 16 bytes of nibbles.
fn dq_q5_1(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.as_chunks::<24>().0.iter().zip(dst.as_chunks_mut::<32>().0) {
        let d = f16_at(b, 0);
        let m = f16_at(b, 2);
        let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        for j in 0..16 {
            let q = b[8 + j];
            let h0 = ((qh >> j) << 4) & 0x10;
            let h1 = (qh >> (j + 12)) & 0x10;
            y[j] = (u32::from(q & 0x0F) | h0) as f32 * d + m;
            y[j + 16] = (u32::from(q >> 4) | h1) as f32 * d + m;
        }
    }
}

/// Q8_0 block: f16 d, then 32 signed bytes.
fn dq_q8_0(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.as_chunks::<34>().0.iter().zip(dst.as_chunks_mut::<32>().0) {
        let d = f16_at(b, 0);
        for j in 0..32 {
            y[j] = f32::from(b[2 + j] as i8) * d;
        }
    }
}

/// Q8_K block: f32 d, 256 signed bytes, then 16 i16 partial sums that dequantisation ignores.
fn dq_q8_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.as_chunks::<292>().0.iter().zip(dst.as_chunks_mut::<QK_K>().0) {
        let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        for j in 0..QK_K {
            y[j] = d * f32::from(b[4 + j] as i8);
        }
    }
}

/// Q2_K block: 16 scale bytes (low nibble scale, high nibble min), 64 bytes of 2-bit values,
/// f16 d, f16 dmin. Each half of 128 elements takes 32 bytes; four bit-pairs of those bytes
/// give four groups of 32, each split into two sub-blocks of 16 with their own scale.
fn dq_q2_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.as_chunks::<84>().0.iter().zip(dst.as_chunks_mut::<QK_K>().0) {
        let (scales, rest) = b.split_at(16);
        let (qs, tail) = rest.split_at(64);
        let d = f16_at(tail, 0);
        let dmin = f16_at(tail, 2);
        let mut out = 0;
        let mut is = 0;
        for q in qs.chunks_exact(32) {
            for shift in [0u32, 2, 4, 6] {
                for half in 0..2 {
                    let sc = scales[is];
                    is += 1;
                    let dl = d * (sc & 0x0F) as f32;
                    let ml = dmin * (sc >> 4) as f32;
                    for &byte in &q[16 * half..16 * half + 16] {
                        y[out] = dl * ((byte >> shift) & 3) as f32 - ml;
                        out += 1;
                    }
                }
            }
        }
    }
}

/// Unpacks the sixteen 6-bit scales of a Q3_K block: the low four bits of scales 0..8 and
/// 8..16 are the low and high nibbles of bytes 0..8, and the top two bits of scale `i` are
/// bits `2 * (i / 4)` of byte `8 + i % 4`.
fn q3_k_scales(packed: &[u8]) -> [i8; 16] {
    let word = |i: usize| u32::from_le_bytes([packed[i], packed[i + 1], packed[i + 2], packed[i + 3]]);
    const LOW2: u32 = 0x0303_0303;
    const LOW4: u32 = 0x0F0F_0F0F;
    let (a0, a1, hi) = (word(0), word(4), word(8));
    let words = [
        (a0 & LOW4) | ((hi & LOW2) << 4),
        (a1 & LOW4) | (((hi >> 2) & LOW2) << 4),
        ((a0 >> 4) & LOW4) | (((hi >> 4) & LOW2) << 4),
        ((a1 >> 4) & LOW4) | (((hi >> 6) & LOW2) << 4),
    ];
    let mut out = [0i8; 16];
    for (chunk, w) in out.chunks_exact_mut(4).zip(words) {
        for (o, byte) in chunk.iter_mut().zip(w.to_le_bytes()) {
            *o = byte as i8;
        }
    }
    out
}

/// Q3_K block: 32 bytes of high-bit masks, 64 bytes of 2-bit values, 12 bytes of packed 6-bit
/// scales, f16 d. The 2-bit values are laid out as in Q2_K; a clear high bit subtracts 4.
fn dq_q3_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.as_chunks::<110>().0.iter().zip(dst.as_chunks_mut::<QK_K>().0) {
        let (hmask, rest) = b.split_at(32);
        let (qs, rest) = rest.split_at(64);
        let (packed, tail) = rest.split_at(12);
        let d_all = f16_at(tail, 0);
        let scales = q3_k_scales(packed);
        let mut out = 0;
        let mut is = 0;
        let mut m = 1u8;
        for q in qs.chunks_exact(32) {
            for shift in [0u32, 2, 4, 6] {
                for half in 0..2 {
                    let dl = d_all * (i32::from(scales[is]) - 32) as f32;
                    is += 1;
                    for l in 16 * half..16 * half + 16 {
                        let low = ((q[l] >> shift) & 3) as i32;
                        let v = low - if hmask[l] & m != 0 { 0 } else { 4 };
                        y[out] = dl * v as f32;
                        out += 1;
                    }
                }
                m <<= 1;
            }
        }
    }
}

/// The 6-bit scale and minimum of sub-block `j` (0..8) of a Q4_K or Q5_K block (ggml's
/// `get_scale_min_k4`).
#[inline(always)]
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Q4_K block: f16 d, f16 dmin, 12 bytes of packed scales and mins, 128 bytes of nibbles. Each
/// group of 64 elements takes 32 bytes: low nibbles first, then high nibbles.
fn dq_q4_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.as_chunks::<144>().0.iter().zip(dst.as_chunks_mut::<QK_K>().0) {
        let d = f16_at(b, 0);
        let dmin = f16_at(b, 2);
        let scales = &b[4..16];
        let qs = &b[16..144];
        for (g, (q, y)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
            let (sc1, m1) = scale_min_k4(2 * g, scales);
            let (sc2, m2) = scale_min_k4(2 * g + 1, scales);
            let (d1, min1) = (d * sc1 as f32, dmin * m1 as f32);
            let (d2, min2) = (d * sc2 as f32, dmin * m2 as f32);
            let (lo, hi) = y.split_at_mut(32);
            for l in 0..32 {
                lo[l] = d1 * (q[l] & 0x0F) as f32 - min1;
                hi[l] = d2 * (q[l] >> 4) as f32 - min2;
            }
        }
    }
}

/// Q5_K block: as Q4_K with 32 bytes of fifth bits after the scales; group `g` takes its
/// fifth bits from bits `2g` and `2g + 1` of those bytes.
fn dq_q5_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.as_chunks::<176>().0.iter().zip(dst.as_chunks_mut::<QK_K>().0) {
        let d = f16_at(b, 0);
        let dmin = f16_at(b, 2);
        let scales = &b[4..16];
        let qh = &b[16..48];
        let qs = &b[48..176];
        for (g, (q, y)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
            let (sc1, m1) = scale_min_k4(2 * g, scales);
            let (sc2, m2) = scale_min_k4(2 * g + 1, scales);
            let (d1, min1) = (d * sc1 as f32, dmin * m1 as f32);
            let (d2, min2) = (d * sc2 as f32, dmin * m2 as f32);
            let (u1, u2) = (1u8 << (2 * g), 2u8 << (2 * g));
            let (lo, hi) = y.split_at_mut(32);
            for l in 0..32 {
                let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
                let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
                lo[l] = d1 * ((q[l] & 0x0F) + h1) as f32 - min1;
                hi[l] = d2 * ((q[l] >> 4) + h2) as f32 - min2;
            }
        }
    }
}

/// Q6_K block: 128 bytes of low nibbles, 64 bytes of high bit-pairs, 16 signed scales, f16 d.
/// Each half of 128 elements takes 64 low-nibble bytes, 32 high bytes and 8 scales.
fn dq_q6_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.as_chunks::<210>().0.iter().zip(dst.as_chunks_mut::<QK_K>().0) {
        let d = f16_at(b, 208);
        for n in 0..2 {
            let ql = &b[64 * n..64 * n + 64];
            let qh = &b[128 + 32 * n..128 + 32 * n + 32];
            let sc = &b[192 + 8 * n..192 + 8 * n + 8];
            let y = &mut y[128 * n..128 * n + 128];
            for l in 0..32 {
                let is = l / 16;
                let h = qh[l];
                let q1 = ((ql[l] & 0x0F) | ((h & 3) << 4)) as i32 - 32;
                let q2 = ((ql[l + 32] & 0x0F) | (((h >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((ql[l] >> 4) | (((h >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((h >> 6) & 3) << 4)) as i32 - 32;
                y[l] = d * f32::from(sc[is] as i8) * q1 as f32;
                y[l + 32] = d * f32::from(sc[is + 2] as i8) * q2 as f32;
                y[l + 64] = d * f32::from(sc[is + 4] as i8) * q3 as f32;
                y[l + 96] = d * f32::from(sc[is + 6] as i8) * q4 as f32;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Writing.
// ---------------------------------------------------------------------------------------------

/// A tensor waiting to be written.
#[derive(Debug, Clone)]
struct PendingTensor {
    name: String,
    shape: Vec<usize>,
    data: Vec<f32>,
}

/// Builds a GGUF v3 file with f32 tensors, such as a llama.cpp control vector. Problems (a
/// duplicate name, a shape that does not match its data) are reported by [`GgufWriter::write`].
#[derive(Debug, Clone, Default)]
pub struct GgufWriter {
    metadata: Vec<(String, GgufValue)>,
    tensors: Vec<PendingTensor>,
}

impl GgufWriter {
    /// An empty file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a metadata entry. Entries are written in the order added. Arrays must hold values
    /// of one type; an empty array is written with element type u8. A `general.alignment`
    /// entry, if given, must be a u32 power of two and sets the data alignment (default 32).
    pub fn add_metadata(&mut self, key: impl Into<String>, value: GgufValue) -> &mut Self {
        self.metadata.push((key.into(), value));
        self
    }

    /// Adds an f32 tensor with a row-major shape of at most four dimensions (an empty shape is
    /// a scalar). The data is in row-major order.
    pub fn add_tensor_f32(&mut self, name: impl Into<String>, shape_row_major: &[usize], data: Vec<f32>) -> &mut Self {
        self.tensors.push(PendingTensor {
            name: name.into(),
            shape: shape_row_major.to_vec(),
            data,
        });
        self
    }

    /// Writes the file to `path`.
    pub fn write(&self, path: &Path) -> Result<(), GgufError> {
        let header = self.encode_header(path)?;
        let io_err = |source| GgufError::Io {
            path: path.to_owned(),
            action: "write",
            source,
        };
        let file = File::create(path).map_err(io_err)?;
        let mut w = BufWriter::new(file);
        self.write_all(&mut w, &header).map_err(io_err)?;
        w.into_inner().map_err(|e| io_err(e.into_error()))?;
        Ok(())
    }

    /// The bytes of the file. `path_for_errors` only labels error messages.
    pub fn to_bytes(&self, path_for_errors: &Path) -> Result<Vec<u8>, GgufError> {
        let header = self.encode_header(path_for_errors)?;
        let mut out = Vec::new();
        self.write_all(&mut out, &header).map_err(|source| GgufError::Io {
            path: path_for_errors.to_owned(),
            action: "write",
            source,
        })?;
        Ok(out)
    }

    fn alignment(&self, path: &Path) -> Result<u64, GgufError> {
        let mut alignment = DEFAULT_ALIGNMENT;
        for (key, value) in &self.metadata {
            if key == "general.alignment" {
                match value {
                    GgufValue::U32(a) if a.is_power_of_two() => alignment = u64::from(*a),
                    other => {
                        return Err(GgufError::Malformed {
                            path: path.to_owned(),
                            problem: format!("general.alignment must be a u32 power of two, not {}", other.describe()),
                        });
                    }
                }
            }
        }
        Ok(alignment)
    }

    /// Validates everything and encodes all bytes before the data section, padding included.
    fn encode_header(&self, path: &Path) -> Result<Vec<u8>, GgufError> {
        let bad = |problem: String| GgufError::Malformed {
            path: path.to_owned(),
            problem,
        };
        let alignment = self.alignment(path)?;
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        let mut keys = HashSet::new();
        for (key, value) in &self.metadata {
            if !keys.insert(key.as_str()) {
                return Err(bad(format!("duplicate metadata key '{key}'")));
            }
            put_string(&mut out, key);
            out.extend_from_slice(&value.type_id().to_le_bytes());
            put_value(&mut out, value).map_err(|problem| bad(format!("metadata '{key}': {problem}")))?;
        }
        let mut names = HashSet::new();
        let mut offset = 0u64;
        for t in &self.tensors {
            if !names.insert(t.name.as_str()) {
                return Err(bad(format!("duplicate tensor name '{}'", t.name)));
            }
            if t.shape.len() > MAX_DIMS {
                return Err(bad(format!(
                    "tensor '{}' has {} dimensions but at most {MAX_DIMS} are allowed",
                    t.name,
                    t.shape.len()
                )));
            }
            let n = t.shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
            if n != Some(t.data.len()) {
                return Err(bad(format!(
                    "tensor '{}' has shape {:?} but {} values",
                    t.name,
                    t.shape,
                    t.data.len()
                )));
            }
            put_string(&mut out, &t.name);
            out.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
            for &d in t.shape.iter().rev() {
                out.extend_from_slice(&(d as u64).to_le_bytes());
            }
            out.extend_from_slice(&GgmlType::F32.id().to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offset = (offset + 4 * t.data.len() as u64).div_ceil(alignment) * alignment;
        }
        let padded = (out.len() as u64).div_ceil(alignment) * alignment;
        out.resize(padded as usize, 0);
        Ok(out)
    }

    /// Writes the header, then each tensor padded to the alignment.
    fn write_all(&self, w: &mut impl Write, header: &[u8]) -> io::Result<()> {
        w.write_all(header)?;
        let alignment = self.alignment(Path::new("")).unwrap_or(DEFAULT_ALIGNMENT) as usize;
        let mut buf = Vec::new();
        for t in &self.tensors {
            buf.clear();
            for v in &t.data {
                buf.extend_from_slice(&v.to_le_bytes());
            }
            // Every tensor, the last included, is padded: ggml's loader reads the padded size.
            buf.resize(buf.len().div_ceil(alignment) * alignment, 0);
            w.write_all(&buf)?;
        }
        w.flush()
    }
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Encodes a value without its type tag.
fn put_value(out: &mut Vec<u8>, value: &GgufValue) -> Result<(), String> {
    match value {
        GgufValue::U8(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::Bool(v) => out.push(u8::from(*v)),
        GgufValue::String(s) => put_string(out, s),
        GgufValue::Array(items) => {
            let elem_ty = items.first().map_or(T_U8, GgufValue::type_id);
            if let Some(odd) = items.iter().find(|v| v.type_id() != elem_ty) {
                return Err(format!(
                    "array mixes {} and {} values",
                    items[0].type_name(),
                    odd.type_name()
                ));
            }
            out.extend_from_slice(&elem_ty.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                put_value(out, item)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BAD: &str = "bad.gguf";

    /// Parses bytes that must be rejected and returns the one-line message.
    fn err_text(bytes: Vec<u8>) -> String {
        match GgufFile::from_bytes(bytes, Path::new(BAD)) {
            Ok(_) => panic!("a corrupt file was accepted"),
            Err(e) => {
                let s = e.to_string();
                assert!(s.starts_with("bad.gguf: "), "message does not name the file: {s}");
                assert!(!s.contains('\n'), "message spans lines: {s}");
                s
            }
        }
    }

    fn assert_err(bytes: Vec<u8>, needle: &str) {
        let s = err_text(bytes);
        assert!(s.contains(needle), "'{s}' does not contain '{needle}'");
    }

    fn put_u32(v: &mut Vec<u8>, x: u32) {
        v.extend_from_slice(&x.to_le_bytes());
    }

    fn put_u64(v: &mut Vec<u8>, x: u64) {
        v.extend_from_slice(&x.to_le_bytes());
    }

    /// One encoded metadata entry.
    fn kv(key: &str, ty: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        put_string(&mut v, key);
        put_u32(&mut v, ty);
        v.extend_from_slice(payload);
        v
    }

    /// One encoded tensor info.
    fn tinfo(name: &str, dims: &[u64], ty: u32, offset: u64) -> Vec<u8> {
        let mut v = Vec::new();
        put_string(&mut v, name);
        put_u32(&mut v, dims.len() as u32);
        for &d in dims {
            put_u64(&mut v, d);
        }
        put_u32(&mut v, ty);
        put_u64(&mut v, offset);
        v
    }

    /// A version 3 file with the given entries, infos and data, padded to 32 bytes.
    fn assemble(kvs: &[Vec<u8>], infos: &[Vec<u8>], data: &[u8]) -> Vec<u8> {
        let mut v = MAGIC.to_vec();
        put_u32(&mut v, 3);
        put_u64(&mut v, infos.len() as u64);
        put_u64(&mut v, kvs.len() as u64);
        kvs.iter().chain(infos).for_each(|part| v.extend_from_slice(part));
        v.resize(v.len().div_ceil(32) * 32, 0);
        v.extend_from_slice(data);
        v
    }

    fn f32_bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    fn sample_metadata() -> Vec<(&'static str, GgufValue)> {
        use GgufValue as V;
        vec![
            ("general.architecture", V::String("llama".into())),
            ("v.u8", V::U8(7)),
            ("v.i8", V::I8(-7)),
            ("v.u16", V::U16(65535)),
            ("v.i16", V::I16(-300)),
            ("v.u32", V::U32(123_456)),
            ("v.i32", V::I32(-5)),
            ("v.f32", V::F32(1.5)),
            ("v.bool", V::Bool(true)),
            ("v.empty", V::String(String::new())),
            ("v.unicode", V::String("héllo wörld ✓".into())),
            ("v.u64", V::U64(u64::MAX)),
            ("v.i64", V::I64(i64::MIN)),
            ("v.f64", V::F64(std::f64::consts::PI)),
            (
                "v.strs",
                V::Array(vec![
                    V::String("a".into()),
                    V::String(String::new()),
                    V::String("ü".into()),
                ]),
            ),
            ("v.ints", V::Array(vec![V::I32(1), V::I32(-2), V::I32(3)])),
            ("v.none", V::Array(vec![])),
            (
                "v.nested",
                V::Array(vec![V::Array(vec![V::U8(1)]), V::Array(vec![V::U8(2), V::U8(3)])]),
            ),
        ]
    }

    /// Tensors as (name, row-major shape, values).
    fn sample_tensors() -> Vec<(&'static str, Vec<usize>, Vec<f32>)> {
        let seq = |n: usize, k: f32| (0..n).map(|i| i as f32 * k - 1.0).collect::<Vec<_>>();
        vec![
            ("vec", vec![5], seq(5, 0.5)),
            ("mat", vec![2, 3], seq(6, -1.25)),
            ("cube", vec![2, 3, 4], seq(24, 0.125)),
            ("scalar", vec![], vec![42.0]),
        ]
    }

    fn sample_writer() -> GgufWriter {
        let mut w = GgufWriter::new();
        for (k, v) in sample_metadata() {
            w.add_metadata(k, v);
        }
        for (name, shape, data) in sample_tensors() {
            w.add_tensor_f32(name, &shape, data);
        }
        w
    }

    fn sample_bytes() -> Vec<u8> {
        sample_writer().to_bytes(Path::new("sample.gguf")).unwrap()
    }

    fn check_sample(file: &GgufFile) {
        assert_eq!(file.version, 3);
        let expected: GgufMetadata = sample_metadata().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        assert_eq!(file.metadata, expected);
        assert_eq!(file.alignment(), 32);
        assert_eq!(file.data_offset() % 32, 0);
        assert_eq!(file.tensors.len(), 4);
        for (name, shape, data) in sample_tensors() {
            let info = file.tensor_info(name).unwrap();
            assert_eq!(info.shape(), shape, "{name}");
            let stored: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
            assert_eq!(info.dims, stored, "{name}");
            assert_eq!(info.ggml_type, GgmlType::F32);
            assert_eq!(info.offset % 32, 0);
            assert_eq!(info.n_elements(), data.len() as u64);
            assert_eq!(info.n_bytes(), 4 * data.len() as u64);
            assert_eq!(file.tensor_bytes(info), f32_bytes(&data).as_slice());
            assert_eq!(file.dequantize(name).unwrap(), data, "{name}");
        }
    }

    #[test]
    fn writer_reader_round_trip_in_memory() {
        let file = GgufFile::from_bytes(sample_bytes(), Path::new("sample.gguf")).unwrap();
        check_sample(&file);
        assert_eq!(file.path(), Path::new("sample.gguf"));
        assert!(file.tensor_info("absent").is_none());
        let e = file.dequantize("absent").unwrap_err().to_string();
        assert_eq!(e, "sample.gguf: no tensor named 'absent'");
    }

    #[test]
    fn writer_reader_round_trip_on_disk() {
        let path = std::env::temp_dir().join(format!("gguf-round-trip-{}.gguf", std::process::id()));
        sample_writer().write(&path).unwrap();
        let opened = GgufFile::open(&path);
        let on_disk = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let file = opened.unwrap();
        check_sample(&file);
        assert_eq!(file.path(), path);
        assert_eq!(on_disk, sample_bytes());
        // Every tensor is padded, so the file ends on an alignment boundary.
        assert_eq!(on_disk.len() % 32, 0);
    }

    #[test]
    fn writer_honours_alignment_and_rejects_bad_input() {
        let mut w = GgufWriter::new();
        w.add_metadata("general.alignment", GgufValue::U32(64));
        w.add_tensor_f32("a", &[3], vec![1.0, 2.0, 3.0]);
        w.add_tensor_f32("b", &[1], vec![4.0]);
        let file = GgufFile::from_bytes(w.to_bytes(Path::new("x")).unwrap(), Path::new("x")).unwrap();
        assert_eq!(file.alignment(), 64);
        assert_eq!(file.data_offset() % 64, 0);
        assert_eq!(file.tensor_info("b").unwrap().offset, 64);
        assert_eq!(file.dequantize("b").unwrap(), vec![4.0]);

        let fail = |w: &GgufWriter, needle: &str| {
            let e = w.to_bytes(Path::new("out.gguf")).unwrap_err().to_string();
            assert!(e.starts_with("out.gguf: ") && e.contains(needle), "{e}");
        };
        let mut w = GgufWriter::new();
        w.add_tensor_f32("a", &[2, 2], vec![1.0; 3]);
        fail(&w, "tensor 'a' has shape [2, 2] but 3 values");
        let mut w = GgufWriter::new();
        w.add_tensor_f32("a", &[1, 1, 1, 1, 1], vec![1.0]);
        fail(&w, "5 dimensions");
        let mut w = GgufWriter::new();
        w.add_tensor_f32("a", &[1], vec![1.0])
            .add_tensor_f32("a", &[1], vec![1.0]);
        fail(&w, "duplicate tensor name 'a'");
        let mut w = GgufWriter::new();
        w.add_metadata("k", GgufValue::U8(1))
            .add_metadata("k", GgufValue::U8(2));
        fail(&w, "duplicate metadata key 'k'");
        let mut w = GgufWriter::new();
        w.add_metadata("k", GgufValue::Array(vec![GgufValue::U8(1), GgufValue::I8(2)]));
        fail(&w, "metadata 'k': array mixes u8 and i8 values");
        let mut w = GgufWriter::new();
        w.add_metadata("general.alignment", GgufValue::U32(24));
        fail(&w, "general.alignment must be a u32 power of two");
        let e = GgufWriter::new()
            .write(Path::new("/nonexistent-dir/out.gguf"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/nonexistent-dir/out.gguf: cannot write: "), "{e}");
    }

    #[test]
    fn metadata_accessors() {
        let file = GgufFile::from_bytes(sample_bytes(), Path::new("m.gguf")).unwrap();
        assert_eq!(file.get_str("general.architecture").unwrap(), "llama");
        assert_eq!(file.get_u32("v.u8").unwrap(), 7);
        assert_eq!(file.get_u32("v.u16").unwrap(), 65535);
        assert_eq!(file.get_u64("v.u64").unwrap(), u64::MAX);
        assert_eq!(file.get_f32("v.f64").unwrap(), std::f32::consts::PI);
        assert_eq!(file.get_f32("v.u32").unwrap(), 123_456.0);
        assert!(file.get_bool("v.bool").unwrap());
        assert_eq!(file.get_str_array("v.strs").unwrap(), vec!["a", "", "ü"]);
        assert_eq!(file.get_array("v.ints").unwrap().len(), 3);
        assert_eq!(file.opt_u32("absent").unwrap(), None);
        assert_eq!(file.opt_str("absent").unwrap(), None);
        assert_eq!(file.opt_f32("v.f32").unwrap(), Some(1.5));
        assert_eq!(file.get("v.i16"), Some(&GgufValue::I16(-300)));

        let e = file.get_u32("v.i8").unwrap_err().to_string();
        assert_eq!(
            e,
            "m.gguf: metadata key 'v.i8' holds i8 -7, expected an integer that fits in u32"
        );
        let e = file.get_u32("v.u64").unwrap_err().to_string();
        assert!(e.contains("holds u64 18446744073709551615"), "{e}");
        let e = file.opt_str("v.u32").unwrap_err().to_string();
        assert_eq!(e, "m.gguf: metadata key 'v.u32' holds u32 123456, expected a string");
        let e = file.get_str_array("v.ints").unwrap_err().to_string();
        assert!(
            e.contains("holds an array of 3 values, expected an array of strings"),
            "{e}"
        );
        let e = file.get_str("absent").unwrap_err().to_string();
        assert_eq!(e, "m.gguf: metadata key 'absent' is missing");
    }

    #[test]
    fn value_conversions() {
        use GgufValue as V;
        assert_eq!(V::I32(-1).as_u64(), None);
        assert_eq!(V::I32(5).as_u64(), Some(5));
        assert_eq!(V::U64(u64::MAX).as_i64(), None);
        assert_eq!(V::U8(3).as_i64(), Some(3));
        assert_eq!(V::I16(-2).as_f64(), Some(-2.0));
        assert_eq!(V::F32(0.5).as_f64(), Some(0.5));
        assert_eq!(V::String("x".into()).as_f64(), None);
        assert_eq!(V::Bool(true).as_u64(), None);
        assert_eq!(V::Bool(false).as_bool(), Some(false));
        assert_eq!(V::String("s".into()).as_str(), Some("s"));
        assert_eq!(V::Array(vec![V::U8(1)]).as_array().map(<[_]>::len), Some(1));
        assert_eq!(V::F64(1.0).type_name(), "f64");
        assert_eq!(V::Array(vec![]).type_name(), "array");
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample_bytes();
        // Only the padding after the last tensor may be cut without losing anything.
        let full = GgufFile::from_bytes(bytes.clone(), Path::new(BAD)).unwrap();
        let data_end = full
            .tensors
            .iter()
            .map(|t| full.data_offset() + t.offset + t.n_bytes())
            .max()
            .unwrap();
        assert!(data_end as usize > bytes.len() - 32);
        for cut in 0..data_end as usize {
            let result = GgufFile::from_bytes(bytes[..cut].to_vec(), Path::new(BAD));
            match result {
                Ok(_) => panic!("a file cut at byte {cut} of {} was accepted", bytes.len()),
                Err(e) => {
                    let s = e.to_string();
                    // A cut inside the counted structures shows up as a count the rest of the
                    // file cannot hold; everywhere else it is reported as truncation.
                    let named = s.starts_with("bad.gguf: truncated: ") || s.contains("but the file can hold at most");
                    assert!(named, "cut at {cut}: {s}");
                }
            }
        }
        for cut in data_end as usize..=bytes.len() {
            assert!(GgufFile::from_bytes(bytes[..cut].to_vec(), Path::new(BAD)).is_ok());
        }
    }

    #[test]
    fn random_corruptions_never_panic() {
        let good = sample_bytes();
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        for _ in 0..3000 {
            let mut bytes = good.clone();
            for _ in 0..1 + rng.next() % 4 {
                let at = (rng.next() % bytes.len() as u64) as usize;
                bytes[at] = rng.next() as u8;
            }
            if let Ok(file) = GgufFile::from_bytes(bytes, Path::new(BAD)) {
                for t in &file.tensors {
                    let _ = file.dequantize(&t.name);
                }
            }
        }
    }

    #[test]
    fn header_corruptions() {
        let good = sample_bytes();
        let patched = |at: usize, with: &[u8]| {
            let mut b = good.clone();
            b[at..at + with.len()].copy_from_slice(with);
            b
        };
        assert_err(patched(0, b"GGUX"), "not a GGUF file (bad magic 0x47475558)");
        assert_err(
            b"PK".to_vec(),
            "truncated: the header needs 4 bytes at byte 0 but the file has 2 bytes",
        );
        assert_err(
            patched(4, &1u32.to_le_bytes()),
            "unsupported GGUF version 1 (only versions 2 and 3",
        );
        assert_err(patched(4, &3u32.to_be_bytes()), "looks big-endian");
        assert_err(
            patched(8, &u64::MAX.to_le_bytes()),
            "header claims 18446744073709551615 tensors but the file can hold at most",
        );
        assert_err(
            patched(16, &u64::MAX.to_le_bytes()),
            "header claims 18446744073709551615 metadata entries but the file can hold at most",
        );
        assert_err(
            patched(8, &u32::MAX.to_le_bytes()),
            "header claims 4294967295 tensors but the file can hold at most",
        );
        // The first key's length.
        assert_err(
            patched(24, &u64::MAX.to_le_bytes()),
            "truncated: the key of metadata entry 0 needs 18446744073709551615 bytes at byte 32",
        );
        // Version 2 files share the layout of version 3.
        assert!(GgufFile::from_bytes(patched(4, &2u32.to_le_bytes()), Path::new(BAD)).is_ok());
        let e = GgufFile::open(Path::new("/nonexistent/model.gguf"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/nonexistent/model.gguf: cannot open: "), "{e}");
    }

    #[test]
    fn metadata_corruptions() {
        let file = |kvs: &[Vec<u8>]| assemble(kvs, &[], &[]);
        assert!(GgufFile::from_bytes(file(&[kv("k", T_U8, &[1])]), Path::new(BAD)).is_ok());

        let mut huge_string = Vec::new();
        put_u64(&mut huge_string, u64::MAX / 2);
        assert_err(
            file(&[kv("name", T_STRING, &huge_string)]),
            "truncated: metadata 'name' needs 9223372036854775807 bytes",
        );

        let mut huge_array = Vec::new();
        put_u32(&mut huge_array, T_U32);
        put_u64(&mut huge_array, u64::MAX);
        assert_err(
            file(&[kv("arr", T_ARRAY, &huge_array)]),
            "metadata 'arr' claims an array of 18446744073709551615 elements but the file can hold at most",
        );

        let mut strings = Vec::new();
        put_u32(&mut strings, T_STRING);
        put_u64(&mut strings, 1 << 40);
        assert_err(
            file(&[kv("toks", T_ARRAY, &strings)]),
            "claims an array of 1099511627776 elements",
        );

        // Arrays nested `levels` deep, the innermost holding one u8.
        let nested = |levels: usize| {
            let mut v = Vec::new();
            for level in 1..levels {
                let _ = level;
                put_u32(&mut v, T_ARRAY);
                put_u64(&mut v, 1);
            }
            put_u32(&mut v, T_U8);
            put_u64(&mut v, 1);
            v.push(9);
            kv("deep", T_ARRAY, &v)
        };
        let ok = GgufFile::from_bytes(file(&[nested(4)]), Path::new(BAD)).unwrap();
        let mut v = ok.get("deep").unwrap();
        for _ in 0..4 {
            v = &v.as_array().unwrap()[0];
        }
        assert_eq!(v, &GgufValue::U8(9));
        assert_err(file(&[nested(5)]), "metadata 'deep' nests arrays more than 4 deep");

        assert_err(file(&[kv("k", 13, &[0])]), "metadata 'k' has unknown value type 13");
        let mut odd_array = Vec::new();
        put_u32(&mut odd_array, 77);
        put_u64(&mut odd_array, 1);
        assert_err(
            file(&[kv("k", T_ARRAY, &odd_array)]),
            "metadata 'k' is an array of unknown value type 77",
        );
        assert_err(file(&[kv("b", T_BOOL, &[2])]), "metadata 'b' has invalid bool byte 2");
        assert_err(
            file(&[kv("k", T_U8, &[1]), kv("k", T_U8, &[2])]),
            "duplicate metadata key 'k'",
        );

        let mut bad_key = Vec::new();
        put_u64(&mut bad_key, 2);
        bad_key.extend_from_slice(&[0xC3, 0x28]);
        put_u32(&mut bad_key, T_U8);
        bad_key.push(0);
        assert_err(
            file(&[bad_key]),
            "the key of metadata entry 0 contains a string that is not valid UTF-8",
        );

        assert_err(
            file(&[kv("general.alignment", T_U32, &0u32.to_le_bytes())]),
            "general.alignment 0 is not a power of two",
        );
        assert_err(
            file(&[kv("general.alignment", T_U32, &48u32.to_le_bytes())]),
            "general.alignment 48 is not a power of two",
        );
        assert_err(
            file(&[kv("general.alignment", T_U64, &32u64.to_le_bytes())]),
            "general.alignment holds u64 32, expected u32",
        );
    }

    #[test]
    fn tensor_info_corruptions() {
        let data = f32_bytes(&[1.0, 2.0, 3.0, 4.0]);
        let one = |info: Vec<u8>| assemble(&[], &[info], &data);
        let ok = GgufFile::from_bytes(one(tinfo("t", &[2, 2], 0, 0)), Path::new(BAD)).unwrap();
        assert_eq!(ok.tensor_info("t").unwrap().shape(), vec![2, 2]);
        assert_eq!(ok.dequantize("t").unwrap(), vec![1.0, 2.0, 3.0, 4.0]);

        assert_err(
            one(tinfo("t", &[1; 5], 0, 0)),
            "tensor 't' has 5 dimensions but at most 4 are allowed",
        );
        assert_err(
            one(tinfo("t", &[u64::MAX, 2], 0, 0)),
            "tensor 't' has dimensions [18446744073709551615, 2] whose product overflows",
        );
        assert_err(one(tinfo("t", &[1 << 32, 1 << 31], 0, 0)), "whose product overflows");
        assert_err(one(tinfo("foo", &[4], 99, 0)), "tensor 'foo' has unknown ggml type 99");
        assert_err(one(tinfo("t", &[4], 4, 0)), "tensor 't' has unknown ggml type 4");
        assert_err(
            one(tinfo("t", &[4], 0, 32)),
            "truncated: tensor 't' data ends at byte 112 but the file has 80 bytes",
        );
        assert_err(
            one(tinfo("t", &[4], 0, u64::MAX / 32 * 32)),
            "data ends at byte 18446744073709551615",
        );
        assert_err(one(tinfo("t", &[1 << 40], 0, 0)), "tensor 't' data ends at byte");
        assert_err(
            one(tinfo("t", &[4], 0, 4)),
            "tensor 't' has offset 4, which is not a multiple of the alignment 32",
        );
        assert_err(
            one(tinfo("q", &[16], GgmlType::Q4_0.id(), 0)),
            "tensor 'q' of type q4_0 has rows of 16 elements, not a multiple of the block size 32",
        );
        assert_err(
            assemble(&[], &[tinfo("t", &[1], 0, 0), tinfo("t", &[1], 0, 0)], &data),
            "duplicate tensor name 't'",
        );

        let mut bad_name = Vec::new();
        put_u64(&mut bad_name, 1);
        bad_name.push(0xFF);
        assert_err(
            assemble(&[], &[bad_name], &data),
            "the name of tensor info 0 contains a string that is not valid UTF-8",
        );

        // A custom alignment moves the data section and the required offset alignment.
        let align = kv("general.alignment", T_U32, &64u32.to_le_bytes());
        let mut bytes = assemble(std::slice::from_ref(&align), &[tinfo("t", &[4], 0, 0)], &[]);
        bytes.resize(bytes.len().div_ceil(64) * 64, 0);
        bytes.extend_from_slice(&data);
        let file = GgufFile::from_bytes(bytes, Path::new(BAD)).unwrap();
        assert_eq!(file.data_offset() % 64, 0);
        assert_eq!(file.dequantize("t").unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
        assert_err(
            assemble(&[align], &[tinfo("t", &[4], 0, 32)], &data),
            "not a multiple of the alignment 64",
        );
    }

    #[test]
    fn ggml_type_table() {
        let mut ids = HashSet::new();
        for ty in GgmlType::ALL {
            assert!(ids.insert(ty.id()), "duplicate id {}", ty.id());
            assert_eq!(GgmlType::from_id(ty.id()), Some(ty));
            assert_eq!(GgmlType::from_name(ty.name()), Some(ty));
            assert_eq!(ty.to_string(), ty.name());
        }
        for retired in [4, 5, 31, 32, 33, 36, 37, 38, 40, 99, u32::MAX] {
            assert_eq!(GgmlType::from_id(retired), None);
        }
        assert_eq!(GgmlType::from_name("Q4_K"), Some(GgmlType::Q4_K));
        assert_eq!(GgmlType::from_name("BF16"), Some(GgmlType::BF16));
        // Block sizes follow the block structs of ggml-common.h.
        assert_eq!(GgmlType::Q2_K.type_size(), 16 + 64 + 2 + 2);
        assert_eq!(GgmlType::Q3_K.type_size(), 32 + 64 + 12 + 2);
        assert_eq!(GgmlType::Q4_K.type_size(), 2 + 2 + 12 + 128);
        assert_eq!(GgmlType::Q5_K.type_size(), 2 + 2 + 12 + 32 + 128);
        assert_eq!(GgmlType::Q6_K.type_size(), 128 + 64 + 16 + 2);
        assert_eq!(GgmlType::Q8_K.type_size(), 4 + 256 + 32);
        let dequantizable: Vec<_> = GgmlType::ALL
            .into_iter()
            .filter(|t| t.is_dequantizable())
            .map(GgmlType::name)
            .collect();
        assert_eq!(
            dequantizable,
            [
                "f32", "f16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "q8_K",
                "bf16"
            ]
        );
    }

    // --- Dequantisation ---------------------------------------------------------------------

    fn h(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_bits().to_le_bytes()
    }

    #[test]
    fn q8_0_by_hand() {
        let mut block = h(0.5).to_vec();
        block.extend((0..32).map(|j| (j as i8 - 16) as u8));
        block[2] = (-128i8) as u8;
        let y = dequantize(GgmlType::Q8_0, &block, 32).unwrap();
        let mut expected: Vec<f32> = (0..32).map(|j| (j as f32 - 16.0) * 0.5).collect();
        expected[0] = -64.0;
        assert_eq!(y, expected);
    }

    #[test]
    fn q4_0_by_hand() {
        // Byte j holds element j in its low nibble and element j + 16 in its high nibble.
        let mut block = h(2.0).to_vec();
        block.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let y = dequantize(GgmlType::Q4_0, &block, 32).unwrap();
        let expected: Vec<f32> = (0..16)
            .map(|j| (j as f32 - 8.0) * 2.0)
            .chain((0..16).map(|j| (7.0 - j as f32) * 2.0))
            .collect();
        assert_eq!(y, expected);
    }

    #[test]
    fn q4_1_by_hand() {
        let mut block = h(0.5).to_vec();
        block.extend(h(-1.0));
        block.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let y = dequantize(GgmlType::Q4_1, &block, 32).unwrap();
        let expected: Vec<f32> = (0..16)
            .map(|j| j as f32 * 0.5 - 1.0)
            .chain((0..16).map(|j| (15 - j) as f32 * 0.5 - 1.0))
            .collect();
        assert_eq!(y, expected);
    }

    #[test]
    fn q5_0_and_q5_1_by_hand() {
        // Fifth bits set for the second half only (bits 16..32 of the word).
        let nibbles: Vec<u8> = (0..16u8).map(|j| j | ((15 - j) << 4)).collect();
        let mut b0 = h(1.0).to_vec();
        b0.extend(0xFFFF_0000u32.to_le_bytes());
        b0.extend(&nibbles);
        let y = dequantize(GgmlType::Q5_0, &b0, 32).unwrap();
        let expected: Vec<f32> = (0..16)
            .map(|j| j as f32 - 16.0)
            .chain((0..16).map(|j| 15.0 - j as f32))
            .collect();
        assert_eq!(y, expected);

        // Fifth bits set for the first half only.
        let mut b1 = h(1.0).to_vec();
        b1.extend(h(0.5));
        b1.extend(0x0000_FFFFu32.to_le_bytes());
        b1.extend(&nibbles);
        let y = dequantize(GgmlType::Q5_1, &b1, 32).unwrap();
        let expected: Vec<f32> = (0..16)
            .map(|j| j as f32 + 16.5)
            .chain((0..16).map(|j| (15 - j) as f32 + 0.5))
            .collect();
        assert_eq!(y, expected);
    }

    #[test]
    fn float_types_by_hand() {
        let values = [1.0f32, -2.5, 65504.0, 0.0, -0.0, f32::INFINITY, 6.103_515_6e-5];
        let f16s: Vec<u8> = values.iter().flat_map(|&v| h(v)).collect();
        assert_eq!(dequantize(GgmlType::F16, &f16s, values.len()).unwrap(), values);
        // bf16 keeps the top half of the f32 bits.
        let bf16s: Vec<u8> = values
            .iter()
            .flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes())
            .collect();
        let y = dequantize(GgmlType::BF16, &bf16s, values.len()).unwrap();
        assert_eq!(y[..2], [1.0, -2.5]);
        assert_eq!(y[2], 65280.0);
        assert_eq!(
            dequantize(GgmlType::F32, &f32_bytes(&values), values.len()).unwrap(),
            values
        );
    }

    #[test]
    fn dequantize_rejects_bad_requests() {
        let e = dequantize(GgmlType::IQ2_XXS, &[0; 66], 256).unwrap_err();
        assert_eq!(e.to_string(), "ggml type iq2_xxs cannot be dequantised");
        let e = dequantize(GgmlType::Q4_K, &[0; 144], 100).unwrap_err();
        assert_eq!(
            e.to_string(),
            "100 elements is not a multiple of the q4_K block size 256"
        );
        let e = dequantize(GgmlType::Q8_0, &[0; 33], 32).unwrap_err();
        assert_eq!(e.to_string(), "32 q8_0 elements take 34 bytes but 33 were given");
        assert_eq!(dequantize(GgmlType::Q6_K, &[], 0).unwrap(), Vec::<f32>::new());
    }

    /// A small deterministic generator (xorshift64).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }

        /// A random finite f16 of moderate magnitude, as little-endian bytes.
        fn scale(&mut self) -> [u8; 2] {
            let r = self.next();
            let sign = ((r & 1) as u16) << 15;
            let exponent = (8 + (r >> 1) % 12) as u16;
            let mantissa = ((r >> 8) & 0x3FF) as u16;
            (sign | (exponent << 10) | mantissa).to_le_bytes()
        }
    }

    fn hf(b: &[u8], i: usize) -> f32 {
        f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
    }

    /// The 6-bit scale and minimum of sub-block `s` of a Q4_K or Q5_K block, element by element.
    fn k4_scale(sc: &[u8], s: usize) -> (f32, f32) {
        let (scale, min) = if s < 4 {
            (sc[s] & 63, sc[s + 4] & 63)
        } else {
            (
                (sc[s + 4] & 15) | ((sc[s - 4] >> 6) << 4),
                (sc[s + 4] >> 4) | ((sc[s] >> 6) << 4),
            )
        };
        (scale as f32, min as f32)
    }

    /// Element `e` of one k-quant block, computed from the documented bit positions alone.
    fn k_element(ty: GgmlType, b: &[u8], e: usize) -> f32 {
        let (half, r) = (e / 128, e % 128);
        match ty {
            GgmlType::Q2_K => {
                let (j, k) = (r / 32, r % 32);
                let q = (b[16 + 32 * half + k] >> (2 * j)) & 3;
                let sc = b[8 * half + 2 * j + k / 16];
                let (d, dmin) = (hf(b, 80), hf(b, 82));
                d * (sc & 15) as f32 * q as f32 - dmin * (sc >> 4) as f32
            }
            GgmlType::Q3_K => {
                let (j, k) = (r / 32, r % 32);
                let q = ((b[32 + 32 * half + k] >> (2 * j)) & 3) as i32;
                let high = (b[k] >> (4 * half + j)) & 1;
                let v = q - if high == 1 { 0 } else { 4 };
                let is = 8 * half + 2 * j + k / 16;
                let sc = &b[96..108];
                let low4 = if is < 8 { sc[is] & 15 } else { sc[is - 8] >> 4 };
                let high2 = (sc[8 + is % 4] >> (2 * (is / 4))) & 3;
                let s6 = (low4 | (high2 << 4)) as i32;
                hf(b, 108) * (s6 - 32) as f32 * v as f32
            }
            GgmlType::Q4_K | GgmlType::Q5_K => {
                let (g, k) = (e / 64, e % 64);
                let sub = 2 * g + k / 32;
                let qs_at = if ty == GgmlType::Q4_K { 16 } else { 48 };
                let byte = b[qs_at + 32 * g + k % 32];
                let mut q = if k < 32 { byte & 15 } else { byte >> 4 };
                if ty == GgmlType::Q5_K && (b[16 + k % 32] >> sub) & 1 == 1 {
                    q += 16;
                }
                let (scale, min) = k4_scale(&b[4..16], sub);
                hf(b, 0) * scale * q as f32 - hf(b, 2) * min
            }
            GgmlType::Q6_K => {
                let (quarter, l) = (r / 32, r % 32);
                let low_byte = b[64 * half + l + 32 * (quarter % 2)];
                let low = if quarter < 2 { low_byte & 15 } else { low_byte >> 4 };
                let high = (b[128 + 32 * half + l] >> (2 * quarter)) & 3;
                let q = (low | (high << 4)) as i32 - 32;
                let scale = b[192 + 8 * half + l / 16 + 2 * quarter] as i8;
                hf(b, 208) * scale as f32 * q as f32
            }
            GgmlType::Q8_K => f32::from_le_bytes([b[0], b[1], b[2], b[3]]) * (b[4 + e] as i8) as f32,
            _ => unreachable!(),
        }
    }

    #[test]
    fn k_quants_match_elementwise_layout() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let scale_at = |ty| match ty {
            GgmlType::Q2_K => vec![80, 82],
            GgmlType::Q3_K => vec![108],
            GgmlType::Q4_K | GgmlType::Q5_K => vec![0, 2],
            GgmlType::Q6_K => vec![208],
            _ => vec![],
        };
        for ty in [
            GgmlType::Q2_K,
            GgmlType::Q3_K,
            GgmlType::Q4_K,
            GgmlType::Q5_K,
            GgmlType::Q6_K,
            GgmlType::Q8_K,
        ] {
            let n_blocks = 3;
            let mut bytes = Vec::new();
            for _ in 0..n_blocks {
                let mut block = rng.bytes(ty.type_size());
                for at in scale_at(ty) {
                    block[at..at + 2].copy_from_slice(&rng.scale());
                }
                if ty == GgmlType::Q8_K {
                    block[..4].copy_from_slice(&0.037f32.to_le_bytes());
                }
                bytes.extend(block);
            }
            let y = dequantize(ty, &bytes, n_blocks * QK_K).unwrap();
            for (i, got) in y.iter().enumerate() {
                let block = &bytes[i / QK_K * ty.type_size()..][..ty.type_size()];
                let want = k_element(ty, block, i % QK_K);
                assert_eq!(got.to_bits(), want.to_bits(), "{ty} element {i}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn threaded_dequantisation_matches_a_single_pass() {
        let mut rng = Rng(12345);
        let n_blocks = 40_000;
        let mut bytes = Vec::new();
        for _ in 0..n_blocks {
            bytes.extend(rng.scale());
            bytes.extend(rng.bytes(32));
        }
        let n = n_blocks * 32;
        assert!(worker_count(n) >= 1);
        let threaded = dequantize(GgmlType::Q8_0, &bytes, n).unwrap();
        let mut single = vec![0.0; n];
        dq_q8_0(&bytes, &mut single);
        assert!(threaded.iter().zip(&single).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}
