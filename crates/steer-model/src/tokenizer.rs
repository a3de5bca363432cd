//! Tokenizers and chat templates for GGUF files and Hugging Face directories.
//!
//! [`ChatTokenizer`] wraps a [`tokenizers::Tokenizer`] together with the model's
//! special token ids and its Jinja chat template.
//!
//! From a Hugging Face directory the tokenizer is `tokenizer.json` as saved by
//! transformers. From a GGUF file it is rebuilt from the `tokenizer.ggml.*`
//! metadata, following llama.cpp (`llama-vocab.cpp`) and transformers' GGUF
//! conversion:
//!
//! * `gpt2` (byte-level BPE): the stored vocabulary and merges. The text is cut
//!   with the regexes llama.cpp uses for `tokenizer.ggml.pre`, applied one after
//!   the other with every match isolated, and the pieces are then mapped to
//!   bytes. Recognised pre-tokenizer names:
//!   - `default` (also when the key is missing): llama.cpp's default list;
//!   - `gpt2`, `gpt-2`, `phi-2`, `mpt`, `olmo`, `jais`, `trillion`, `exaone4`:
//!     the GPT-2 regex;
//!   - `llama3`, `llama-v3`, `llama-bpe`, `falcon3`, `falcon-h1`, `pixtral`,
//!     `midm-2.0`, `lfm2` (whole words found in the vocabulary skip the merges,
//!     and BOS is added unless `add_bos_token` says otherwise), `dbrx`,
//!     `smaug-bpe`: the Llama 3 regex;
//!   - `qwen2`, `deepseek-r1-qwen`, `kormo`, `stablelm2`, `hunyuan`, `megrez`:
//!     the Qwen 2 regex;
//!   - `smollm`, `starcoder`, `refact`, `command-r`, `codeshell`, `exaone`,
//!     `minerva-7b`: single digits, then the GPT-2 regex;
//!   - `falcon`, `deepseek-llm`, `deepseek-coder`: their llama.cpp lists.
//!
//!   Any other name falls back to the GPT-2 regex without an error (llama.cpp
//!   would use its default list instead); the result is exact for tokenizers
//!   that split like GPT-2 and approximate otherwise.
//! * `llama` (SentencePiece BPE: Llama 2, TinyLlama, Mistral): merges are taken
//!   from `tokenizer.ggml.merges` when present and otherwise derived from the
//!   vocabulary scores exactly as transformers' GGUF conversion does,
//!   spaces become `▁` with one `▁` prepended to the start of the text (as
//!   transformers does, not after every special token as llama.cpp does), and
//!   characters outside the vocabulary fall back to `<0xXX>` byte tokens.
//!
//! Control tokens (and the unknown token) become special added tokens and
//! user-defined tokens become plain added tokens, so both are recognised as one
//! id wherever they appear in the text.
//!
//! Chat templates are rendered with minijinja set up like transformers' Jinja
//! environment: `trim_blocks` and `lstrip_blocks` on, no trailing newline kept,
//! Python string and dict methods (`.strip()`, `.startswith()`, `.items()`, ...)
//! and a `raise_exception(message)` function. Templates see `messages`,
//! `add_generation_prompt`, `bos_token` and `eos_token`; `strftime_now` and
//! `tools` are not provided, so templates that consult them take their
//! fallback branch, which keeps rendering deterministic.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use minijinja::{Environment, ErrorKind};
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::{SpecialToken, TemplateProcessing};
use tokenizers::{AddedToken, DecoderWrapper, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

use crate::gguf::{GgufMetadata, GgufValue};

/// One message of a chat conversation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    /// Who speaks: `system`, `user` or `assistant`.
    pub role: String,
    /// What is said.
    pub content: String,
}

/// Everything that can go wrong while building or using a [`ChatTokenizer`].
///
/// Every message is one line that names the source file and the problem.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },
    /// A JSON file could not be parsed.
    #[error("{path}: invalid JSON: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What the parser reported.
        message: String,
    },
    /// The tokenizer description is missing, inconsistent or out of range.
    #[error("{path}: {message}")]
    Invalid {
        /// The GGUF file or JSON file that holds the tokenizer.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The GGUF tokenizer model is neither `gpt2` nor `llama`.
    #[error("{path}: unsupported tokenizer model '{model}'")]
    UnsupportedModel {
        /// The GGUF file.
        path: PathBuf,
        /// The value of `tokenizer.ggml.model`.
        model: String,
    },
    /// The model has no chat template.
    #[error("{path}: model has no chat template")]
    NoChatTemplate {
        /// Where the tokenizer came from.
        path: PathBuf,
    },
    /// The chat template could not be compiled or rendered.
    #[error("{path}: chat template: {message}")]
    ChatTemplate {
        /// Where the template came from.
        path: PathBuf,
        /// The template engine's message, or the one given to `raise_exception`.
        message: String,
    },
    /// Text could not be encoded.
    #[error("{path}: encode: {message}")]
    Encode {
        /// Where the tokenizer came from.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Token ids could not be decoded.
    #[error("{path}: decode: {message}")]
    Decode {
        /// Where the tokenizer came from.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// Collapses line breaks so that every error message stays on one line.
fn one_line(message: impl fmt::Display) -> String {
    let text = message.to_string();
    if text.contains(['\n', '\r']) {
        text.split(['\n', '\r'])
            .filter(|s| !s.trim().is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        text
    }
}

/// A tokenizer with its special tokens and chat template.
#[derive(Clone)]
pub struct ChatTokenizer {
    tokenizer: Tokenizer,
    source: PathBuf,
    template_source: PathBuf,
    vocab_size: usize,
    bos_id: Option<u32>,
    bos_token: Option<String>,
    eos_token: Option<String>,
    eos_ids: Vec<u32>,
    pad_id: u32,
    add_bos: bool,
    chat_template: Option<String>,
    /// The compiled template, or the compile error as text.
    template_env: Option<Result<Environment<'static>, String>>,
}

impl fmt::Debug for ChatTokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTokenizer")
            .field("source", &self.source)
            .field("vocab_size", &self.vocab_size)
            .field("bos_id", &self.bos_id)
            .field("eos_ids", &self.eos_ids)
            .field("pad_id", &self.pad_id)
            .field("add_bos", &self.add_bos)
            .field("has_chat_template", &self.chat_template.is_some())
            .finish()
    }
}

/// Texts of tokens that end generation wherever they occur (llama.cpp's list).
const END_OF_GENERATION_TOKENS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<|end_of_text|>",
    "<end_of_utterance>",
];

/// GGUF token types (`tokenizer.ggml.token_type`).
const TOKEN_TYPE_NORMAL: i64 = 1;
const TOKEN_TYPE_UNKNOWN: i64 = 2;
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// The SentencePiece word-boundary marker.
const METASPACE: char = '▁';

/// The name under which the chat template is compiled (it appears in errors).
const TEMPLATE_NAME: &str = "chat_template";

impl ChatTokenizer {
    /// Builds the tokenizer described by a GGUF file's metadata.
    ///
    /// `source` is the GGUF file; it only appears in error messages.
    pub fn from_gguf_metadata(meta: &GgufMetadata, source: &Path) -> Result<Self, TokenizerError> {
        let m = Meta { meta, path: source };
        let tokens = m
            .string_array("tokenizer.ggml.tokens")?
            .ok_or_else(|| m.invalid("no tokenizer (tokenizer.ggml.tokens missing)"))?;
        let model = m
            .string("tokenizer.ggml.model")?
            .ok_or_else(|| m.invalid("no tokenizer (tokenizer.ggml.model missing)"))?;
        if tokens.is_empty() {
            return Err(m.invalid("tokenizer.ggml.tokens is empty"));
        }
        if u32::try_from(tokens.len()).is_err() {
            return Err(m.invalid(format!(
                "tokenizer.ggml.tokens has {} entries, too many for u32 ids",
                tokens.len()
            )));
        }
        let n = tokens.len();
        let types = match m.int_array("tokenizer.ggml.token_type")? {
            Some(types) if types.len() != n => {
                return Err(m.invalid(format!(
                    "tokenizer.ggml.token_type has {} entries but tokenizer.ggml.tokens has {n}",
                    types.len()
                )));
            }
            Some(types) => types,
            None => vec![TOKEN_TYPE_NORMAL; n],
        };
        let token_id = |key: &str| -> Result<Option<u32>, TokenizerError> {
            match m.uint(key)? {
                None => Ok(None),
                Some(id) if id < n as u64 => Ok(Some(id as u32)),
                Some(id) => Err(m.invalid(format!("{key} = {id} is out of range ({n} tokens)"))),
            }
        };
        let mut bos_id = token_id("tokenizer.ggml.bos_token_id")?;
        let mut eos_id = token_id("tokenizer.ggml.eos_token_id")?;
        let unk_id = token_id("tokenizer.ggml.unknown_token_id")?;
        let pad_id = token_id("tokenizer.ggml.padding_token_id")?;
        let eot_id = token_id("tokenizer.ggml.eot_token_id")?;
        let eom_id = token_id("tokenizer.ggml.eom_token_id")?;

        let (model_tokenizer, default_add_bos) = match model {
            "gpt2" => {
                let pre = m.string("tokenizer.ggml.pre")?;
                let spec = pre_tokenizer_spec(pre);
                (gpt2_tokenizer(&m, &tokens, spec)?, spec.add_bos)
            }
            "llama" => {
                // llama.cpp's defaults for SentencePiece vocabularies.
                bos_id = bos_id.or(Some(1).filter(|&id| (id as usize) < n));
                eos_id = eos_id.or(Some(2).filter(|&id| (id as usize) < n));
                let add_space_prefix = m.boolean("tokenizer.ggml.add_space_prefix")?.unwrap_or(true);
                (spm_tokenizer(&m, &tokens, unk_id, add_space_prefix)?, true)
            }
            other => {
                return Err(TokenizerError::UnsupportedModel {
                    path: source.to_path_buf(),
                    model: other.to_owned(),
                });
            }
        };
        let mut tokenizer = model_tokenizer;

        // Control and unknown tokens are special; user-defined tokens are matched
        // in the text but are not special.
        let mut special = Vec::new();
        let mut user_defined = Vec::new();
        for (token, &kind) in tokens.iter().zip(&types) {
            if token.is_empty() {
                continue;
            }
            match kind {
                TOKEN_TYPE_CONTROL | TOKEN_TYPE_UNKNOWN => {
                    special.push(AddedToken::from(token.to_string(), true).normalized(false));
                }
                TOKEN_TYPE_USER_DEFINED => {
                    user_defined.push(AddedToken::from(token.to_string(), false).normalized(false));
                }
                _ => {}
            }
        }
        tokenizer.add_special_tokens(&special);
        tokenizer.add_tokens(&user_defined);

        let add_bos = m.boolean("tokenizer.ggml.add_bos_token")?.unwrap_or(default_add_bos);
        let add_eos = m.boolean("tokenizer.ggml.add_eos_token")?.unwrap_or(false);
        let bos = match (add_bos, bos_id) {
            (false, _) => None,
            (true, Some(id)) => Some((id, tokens[id as usize])),
            (true, None) => {
                return Err(m.invalid("tokenizer.ggml.add_bos_token is set but there is no bos_token_id"));
            }
        };
        let eos = match (add_eos, eos_id) {
            (false, _) => None,
            (true, Some(id)) => Some((id, tokens[id as usize])),
            (true, None) => {
                return Err(m.invalid("tokenizer.ggml.add_eos_token is set but there is no eos_token_id"));
            }
        };
        if let Some(processor) = bos_eos_processor(bos, eos).map_err(|e| m.invalid(e))? {
            tokenizer.with_post_processor(Some(processor));
        }

        // Every id that ends generation: eos, eot, eom, then the end-of-turn
        // tokens llama.cpp recognises by their text.
        let mut eos_ids = Vec::new();
        for id in [eos_id, eot_id, eom_id].into_iter().flatten() {
            push_unique(&mut eos_ids, id);
        }
        let mut by_text: HashMap<&str, u32> = HashMap::new();
        for (i, token) in tokens.iter().enumerate() {
            if END_OF_GENERATION_TOKENS.contains(token) {
                by_text.insert(token, i as u32);
            }
        }
        for id in end_of_generation_ids(|text| by_text.get(text).copied()) {
            push_unique(&mut eos_ids, id);
        }

        let chat_template = m.string("tokenizer.chat_template")?.map(str::to_owned);
        Ok(Self::assemble(Parts {
            tokenizer,
            source: source.to_path_buf(),
            template_source: source.to_path_buf(),
            vocab_size: n,
            bos_id,
            bos_token: bos_id.map(|id| tokens[id as usize].to_owned()),
            eos_token: eos_id.map(|id| tokens[id as usize].to_owned()),
            eos_ids,
            pad_id,
            add_bos,
            chat_template,
        }))
    }

    /// Loads a Hugging Face tokenizer directory.
    ///
    /// Reads `tokenizer.json` and, where present, `tokenizer_config.json` (chat
    /// template, BOS/EOS/PAD tokens), `chat_template.jinja` (which takes
    /// precedence over the config's template, as in transformers) and
    /// `generation_config.json` (`eos_token_id` as a number or a list,
    /// `pad_token_id`, `bos_token_id`). Whether BOS is added is decided by the
    /// post-processor of `tokenizer.json`, as in transformers.
    pub fn from_hf_dir(dir: &Path) -> Result<Self, TokenizerError> {
        let tokenizer_path = dir.join("tokenizer.json");
        if !tokenizer_path.is_file() {
            return Err(TokenizerError::Invalid {
                path: tokenizer_path,
                message: "file not found".into(),
            });
        }
        let invalid = |e: tokenizers::Error| TokenizerError::Invalid {
            path: tokenizer_path.clone(),
            message: one_line(e),
        };
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path).map_err(invalid)?;
        // Prompts are encoded whole: no truncation or padding saved with the file.
        tokenizer.with_truncation(None).map_err(invalid)?;
        tokenizer.with_padding(None);

        let config_path = dir.join("tokenizer_config.json");
        let config = read_optional_json(&config_path)?;
        let generation_path = dir.join("generation_config.json");
        let generation = read_optional_json(&generation_path)?;

        let vocab_size = tokenizer.get_vocab_size(true);
        let lookup = |path: &Path, what: &str, token: &str| -> Result<u32, TokenizerError> {
            tokenizer.token_to_id(token).ok_or_else(|| TokenizerError::Invalid {
                path: path.to_path_buf(),
                message: format!("{what} {token:?} is not in the vocabulary"),
            })
        };
        let config_token = |key: &str| -> Result<Option<String>, TokenizerError> {
            match config.as_ref().and_then(|c| c.get(key)) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                Some(serde_json::Value::Object(o)) => match o.get("content") {
                    Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                    _ => Err(TokenizerError::Invalid {
                        path: config_path.clone(),
                        message: format!("{key} has no string \"content\""),
                    }),
                },
                Some(_) => Err(TokenizerError::Invalid {
                    path: config_path.clone(),
                    message: format!("{key} is neither a string nor a token object"),
                }),
            }
        };
        let generation_ids = |key: &str| -> Result<Vec<u32>, TokenizerError> {
            let invalid = || TokenizerError::Invalid {
                path: generation_path.clone(),
                message: format!("{key} is neither a token id nor a list of token ids"),
            };
            let as_id = |v: &serde_json::Value| v.as_u64().and_then(|id| u32::try_from(id).ok());
            let ids = match generation.as_ref().and_then(|g| g.get(key)) {
                None | Some(serde_json::Value::Null) => Vec::new(),
                Some(serde_json::Value::Array(items)) => items
                    .iter()
                    .map(|v| as_id(v).ok_or_else(invalid))
                    .collect::<Result<Vec<_>, _>>()?,
                Some(v) => vec![as_id(v).ok_or_else(invalid)?],
            };
            if let Some(&bad) = ids.iter().find(|&&id| id as usize >= vocab_size) {
                return Err(TokenizerError::Invalid {
                    path: generation_path.clone(),
                    message: format!("{key} {bad} is out of range ({vocab_size} tokens)"),
                });
            }
            Ok(ids)
        };

        let bos_token = config_token("bos_token")?;
        let eos_token = config_token("eos_token")?;
        let pad_token = config_token("pad_token")?;
        let bos_id = match &bos_token {
            Some(t) => Some(lookup(&config_path, "bos_token", t)?),
            None => generation_ids("bos_token_id")?.first().copied(),
        };
        let eos_id = match &eos_token {
            Some(t) => Some(lookup(&config_path, "eos_token", t)?),
            None => None,
        };
        let pad_id = match &pad_token {
            Some(t) => Some(lookup(&config_path, "pad_token", t)?),
            None => generation_ids("pad_token_id")?.first().copied(),
        };

        let mut eos_ids = Vec::new();
        for id in eos_id.into_iter().chain(generation_ids("eos_token_id")?) {
            push_unique(&mut eos_ids, id);
        }
        for id in end_of_generation_ids(|text| tokenizer.token_to_id(text)) {
            push_unique(&mut eos_ids, id);
        }
        let eos_token = eos_token.or_else(|| eos_ids.first().and_then(|&id| tokenizer.id_to_token(id)));
        let bos_token = bos_token.or_else(|| bos_id.and_then(|id| tokenizer.id_to_token(id)));

        // BOS is added when the post-processor puts it in front of the text.
        let add_bos = match (bos_id, tokenizer.encode("a", true)) {
            (Some(bos), Ok(enc)) => enc.get_ids().first() == Some(&bos),
            _ => false,
        };

        let jinja_path = dir.join("chat_template.jinja");
        let (chat_template, template_path) = if jinja_path.is_file() {
            let text = std::fs::read_to_string(&jinja_path).map_err(|source| TokenizerError::Io {
                path: jinja_path.clone(),
                source,
            })?;
            (Some(text), jinja_path)
        } else {
            (
                config_chat_template(config.as_ref(), &config_path)?,
                config_path.clone(),
            )
        };

        Ok(Self::assemble(Parts {
            tokenizer,
            source: tokenizer_path,
            template_source: template_path,
            vocab_size,
            bos_id,
            bos_token,
            eos_token,
            eos_ids,
            pad_id,
            add_bos,
            chat_template,
        }))
    }

    /// Completes the fields that both sources derive the same way.
    fn assemble(parts: Parts) -> Self {
        let pad_id = parts.pad_id.or(parts.eos_ids.first().copied()).unwrap_or(0);
        let template_env = parts
            .chat_template
            .as_deref()
            .map(|t| compile_template(t).map_err(one_line));
        ChatTokenizer {
            tokenizer: parts.tokenizer,
            source: parts.source,
            template_source: parts.template_source,
            vocab_size: parts.vocab_size,
            bos_id: parts.bos_id,
            bos_token: parts.bos_token,
            eos_token: parts.eos_token,
            eos_ids: parts.eos_ids,
            pad_id,
            add_bos: parts.add_bos,
            chat_template: parts.chat_template,
            template_env,
        }
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The file the tokenizer was read from (GGUF file or `tokenizer.json`).
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Encodes `text`. Special tokens written in the text are recognised either
    /// way; `add_special_tokens` adds BOS in front when the model adds one.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TokenizerError> {
        let encoding = self
            .tokenizer
            .encode(text, add_special_tokens)
            .map_err(|e| TokenizerError::Encode {
                path: self.source.clone(),
                message: one_line(e),
            })?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Decodes `ids` to text, leaving out special tokens if `skip_special_tokens`.
    ///
    /// Ids outside the vocabulary are an error.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TokenizerError> {
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= self.vocab_size) {
            return Err(TokenizerError::Decode {
                path: self.source.clone(),
                message: format!("token id {bad} is out of range ({} tokens)", self.vocab_size),
            });
        }
        self.tokenizer
            .decode(ids, skip_special_tokens)
            .map_err(|e| TokenizerError::Decode {
                path: self.source.clone(),
                message: one_line(e),
            })
    }

    /// The id of a token given by its text as stored in the vocabulary (for
    /// byte-level BPE that is the byte-mapped form, e.g. `Ġthe`).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.tokenizer.token_to_id(token)
    }

    /// The number of token ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The beginning-of-sequence token, if the model has one.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// Whether [`encode`](Self::encode) with `add_special_tokens` puts BOS in front.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Every id that ends generation: EOS first, then end-of-turn tokens (EOT,
    /// EOM, `<|im_end|>`, `<|eot_id|>`, `<|endoftext|>`, ... where the vocabulary
    /// has them).
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// Whether `id` ends generation.
    pub fn is_eos(&self, id: u32) -> bool {
        self.eos_ids.contains(&id)
    }

    /// The padding token: PAD if the model defines one, else the first of
    /// [`eos_ids`](Self::eos_ids), else 0.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The Jinja source of the chat template, if the model has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// Renders `messages` with the model's chat template, ending with the
    /// assistant's turn header if `add_generation_prompt`.
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, TokenizerError> {
        let template_error = |message: String| TokenizerError::ChatTemplate {
            path: self.template_source.clone(),
            message,
        };
        let env = match &self.template_env {
            None => {
                return Err(TokenizerError::NoChatTemplate {
                    path: self.template_source.clone(),
                });
            }
            Some(Err(message)) => return Err(template_error(message.clone())),
            Some(Ok(env)) => env,
        };
        let template = env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| template_error(one_line(e)))?;
        let ctx = minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.as_deref().unwrap_or(""),
            eos_token => self.eos_token.as_deref().unwrap_or(""),
        };
        let mut out = Bounded::default();
        match template.render_captured_to(ctx, &mut out) {
            Ok(_) => String::from_utf8(out.bytes).map_err(|_| template_error("the output is not UTF-8".into())),
            Err(_) if out.over => Err(template_error(format!(
                "the rendered prompt would exceed {TEMPLATE_OUTPUT_LIMIT} bytes"
            ))),
            Err(e) if e.kind() == ErrorKind::OutOfFuel => Err(template_error(format!(
                "rendering ran past {TEMPLATE_FUEL} instructions (a loop that does not end?)"
            ))),
            Err(e) => Err(template_error(one_line(e))),
        }
    }

    /// Renders `messages` with the chat template and encodes the result without
    /// adding special tokens (the template writes them itself), as transformers
    /// does.
    pub fn encode_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        let text = self.apply_chat_template(messages, add_generation_prompt)?;
        self.encode(&text, false)
    }
}

/// The fields [`ChatTokenizer::assemble`] completes.
struct Parts {
    tokenizer: Tokenizer,
    source: PathBuf,
    template_source: PathBuf,
    vocab_size: usize,
    bos_id: Option<u32>,
    bos_token: Option<String>,
    eos_token: Option<String>,
    eos_ids: Vec<u32>,
    pad_id: Option<u32>,
    add_bos: bool,
    chat_template: Option<String>,
}

fn push_unique(ids: &mut Vec<u32>, id: u32) {
    if !ids.contains(&id) {
        ids.push(id);
    }
}

/// The ids of llama.cpp's end-of-generation tokens, in ascending order, found
/// through `lookup`. As in llama.cpp, `<|end|>` does not end generation when
/// `<|return|>` and `<|call|>` exist (gpt-oss).
fn end_of_generation_ids(lookup: impl Fn(&str) -> Option<u32>) -> Vec<u32> {
    let harmony = lookup("<|return|>").is_some() && lookup("<|call|>").is_some();
    let mut ids: Vec<u32> = END_OF_GENERATION_TOKENS
        .iter()
        .filter(|&&text| !(harmony && text == "<|end|>"))
        .filter_map(|&text| lookup(text))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// A post-processor that puts BOS in front and/or EOS behind each sequence.
fn bos_eos_processor(bos: Option<(u32, &str)>, eos: Option<(u32, &str)>) -> Result<Option<TemplateProcessing>, String> {
    if bos.is_none() && eos.is_none() {
        return Ok(None);
    }
    let mut special_tokens = Vec::new();
    if let Some((id, token)) = bos {
        special_tokens.push(SpecialToken::new("[BOS]".into(), vec![id], vec![token.to_owned()]).map_err(one_line)?);
    }
    if let Some((id, token)) = eos {
        special_tokens.push(SpecialToken::new("[EOS]".into(), vec![id], vec![token.to_owned()]).map_err(one_line)?);
    }
    let wrap = |sequence: &str, type_id: u32| {
        let mut pieces = Vec::with_capacity(3);
        if bos.is_some() {
            pieces.push(format!("[BOS]:{type_id}"));
        }
        pieces.push(format!("{sequence}:{type_id}"));
        if eos.is_some() {
            pieces.push(format!("[EOS]:{type_id}"));
        }
        pieces
    };
    let single = wrap("$A", 0);
    let pair = [wrap("$A", 0), wrap("$B", 1)].concat();
    TemplateProcessing::builder()
        .try_single(single)
        .and_then(|b| b.try_pair(pair))
        .map_err(|e| format!("post-processor: {e}"))?
        .special_tokens(special_tokens)
        .build()
        .map(Some)
        .map_err(|e| format!("post-processor: {}", one_line(e)))
}

/// How llama.cpp splits text for one `tokenizer.ggml.pre` value.
#[derive(Clone, Copy)]
struct PreTokenizerSpec {
    /// Regexes applied one after the other; each match becomes its own piece.
    regexes: &'static [&'static str],
    /// Whole pieces found in the vocabulary are taken as they are.
    ignore_merges: bool,
    /// Whether BOS is added when `tokenizer.ggml.add_bos_token` is absent.
    add_bos: bool,
}

const GPT2_REGEX: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const LLAMA3_REGEX: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_REGEX: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const DEFAULT_REGEXES: &[&str] = &[r"[\p{P}\$\+<=>\^~\|]+", GPT2_REGEX, r"\p{N}+", "[0-9][0-9][0-9]"];
const FALCON_REGEXES: &[&str] = &[r"[\p{P}\$\+<=>\^~\|`]+", GPT2_REGEX, "[0-9][0-9][0-9]"];
const DIGITS_THEN_GPT2_REGEXES: &[&str] = &[r"\p{N}", GPT2_REGEX];
const DEEPSEEK_LLM_REGEXES: &[&str] = &[
    "[\r\n]",
    "\\s?[A-Za-z\u{b5}\u{c0}-\u{d6}\u{d8}-\u{f6}\u{f8}-\u{1ba}\u{1bc}-\u{1bf}\u{1c4}-\u{293}\u{295}-\u{2af}\u{370}-\u{373}\u{376}\u{377}\u{37b}-\u{37d}\u{37f}\u{386}\u{388}-\u{38a}\u{38c}\u{38e}-\u{3a1}\u{3a3}-\u{3f5}\u{3f7}-\u{481}\u{48a}-\u{52f}\u{531}-\u{556}\u{10a0}-\u{10c5}\u{13a0}-\u{13f5}\u{13f8}-\u{13fd}\u{1c90}-\u{1cba}\u{1cbd}-\u{1cbf}\u{1d00}-\u{1d2b}\u{1d6b}-\u{1d77}\u{1d79}-\u{1d9a}\u{1e00}-\u{1f15}\u{1f18}-\u{1f1d}\u{1f20}-\u{1f45}\u{1f48}-\u{1f4d}\u{1f50}-\u{1f57}\u{1f59}\u{1f5b}\u{1f5d}\u{1f5f}-\u{1f7d}\u{1f80}-\u{1fb4}\u{1fb6}-\u{1fbc}\u{1fbe}\u{1fc2}-\u{1fc4}\u{1fc6}-\u{1fcc}\u{1fd0}-\u{1fd3}\u{1fd6}-\u{1fdb}\u{1fe0}-\u{1fec}\u{1ff2}-\u{1ff4}\u{1ff6}-\u{1ffc}\u{2102}\u{2107}\u{210a}-\u{2113}\u{2115}\u{2119}-\u{211d}\u{2124}\u{2126}\u{2128}\u{212a}-\u{212d}\u{212f}-\u{2134}\u{2139}\u{213c}-\u{213f}\u{2145}-\u{2149}\u{214e}\u{2183}\u{2184}\u{2c00}-\u{2c7b}\u{2c7e}-\u{2ce4}\u{2ceb}-\u{2cee}\u{2cf2}\u{2cf3}\u{a640}-\u{a66d}\u{a680}-\u{a69b}\u{a722}-\u{a76f}\u{a771}-\u{a787}\u{a78b}-\u{a78e}\u{ab70}-\u{abbf}\u{fb00}-\u{fb06}\u{fb13}-\u{fb17}\u{ff21}-\u{ff3a}\u{ff41}-\u{ff5a}\u{10400}-\u{1044f}\u{104b0}-\u{104d3}\u{104d8}-\u{104fb}\u{10c80}-\u{10cb2}\u{10cc0}-\u{10cf2}\u{118a0}-\u{118df}\u{1e900}-\u{1e943}]+",
    "\\s?[!-/:-~\u{ff01}-\u{ff0f}\u{ff1a}-\u{ff5e}\u{2018}-\u{201f}\u{3000}-\u{3002}]+",
    "\\s+$",
    "[\u{4e00}-\u{9fa5}\u{800}-\u{4e00}\u{ac00}-\u{d7ff}]+",
    "\\p{N}+",
];
const DEEPSEEK_CODER_REGEXES: &[&str] = &[
    "[\r\n]",
    r"\s?\p{L}+",
    r"\s?\p{P}+",
    "[\u{4e00}-\u{9fa5}\u{800}-\u{4e00}\u{ac00}-\u{d7ff}]+",
    r"\p{N}",
];

/// The split for a `tokenizer.ggml.pre` value (see the module documentation).
fn pre_tokenizer_spec(pre: Option<&str>) -> PreTokenizerSpec {
    let plain = |regexes| PreTokenizerSpec {
        regexes,
        ignore_merges: false,
        add_bos: false,
    };
    match pre.unwrap_or("default") {
        "default" => plain(DEFAULT_REGEXES),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2" => {
            PreTokenizerSpec {
                regexes: &[LLAMA3_REGEX],
                ignore_merges: true,
                add_bos: true,
            }
        }
        "dbrx" | "smaug-bpe" => plain(&[LLAMA3_REGEX]),
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "stablelm2" | "hunyuan" | "megrez" => plain(&[QWEN2_REGEX]),
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b" => {
            plain(DIGITS_THEN_GPT2_REGEXES)
        }
        "falcon" => plain(FALCON_REGEXES),
        "deepseek-llm" => plain(DEEPSEEK_LLM_REGEXES),
        "deepseek-coder" => plain(DEEPSEEK_CODER_REGEXES),
        // `gpt2` and its aliases, and every name not listed above.
        _ => plain(&[GPT2_REGEX]),
    }
}

/// The vocabulary as a map; for repeated texts the last id wins, as in
/// llama.cpp and transformers.
fn vocab_map(tokens: &[&str]) -> Vocab {
    tokens
        .iter()
        .enumerate()
        .map(|(i, t)| ((*t).to_owned(), i as u32))
        .collect()
}

/// Parses `tokenizer.ggml.merges` ("left right" per entry) and checks that both
/// halves and their concatenation are in the vocabulary.
fn parse_merges(m: &Meta<'_>, merges: &[&str], vocab: &Vocab) -> Result<Vec<(String, String)>, TokenizerError> {
    let mut out = Vec::with_capacity(merges.len());
    for (i, line) in merges.iter().enumerate() {
        let (left, right) = line
            .split_once(' ')
            .filter(|(l, r)| !l.is_empty() && !r.is_empty() && !r.contains(' '))
            .ok_or_else(|| {
                m.invalid(format!(
                    "tokenizer.ggml.merges[{i}] = {line:?} is not two tokens separated by a space"
                ))
            })?;
        let merged = format!("{left}{right}");
        for part in [left, right, merged.as_str()] {
            if !vocab.contains_key(part) {
                return Err(m.invalid(format!(
                    "tokenizer.ggml.merges[{i}] = {line:?}: {part:?} is not in the vocabulary"
                )));
            }
        }
        out.push((left.to_owned(), right.to_owned()));
    }
    Ok(out)
}

/// Byte-level BPE (`tokenizer.ggml.model = "gpt2"`).
fn gpt2_tokenizer(m: &Meta<'_>, tokens: &[&str], spec: PreTokenizerSpec) -> Result<Tokenizer, TokenizerError> {
    let merges = m
        .string_array("tokenizer.ggml.merges")?
        .ok_or_else(|| m.invalid("tokenizer.ggml.merges missing (a gpt2 tokenizer needs merges)"))?;
    let vocab = vocab_map(tokens);
    let merges = parse_merges(m, &merges, &vocab)?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(spec.ignore_merges)
        .build()
        .map_err(|e| m.invalid(format!("cannot build the BPE model: {}", one_line(e))))?;

    let mut steps: Vec<PreTokenizerWrapper> = Vec::with_capacity(spec.regexes.len() + 1);
    for regex in spec.regexes {
        let split = Split::new(
            SplitPattern::Regex((*regex).to_owned()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| m.invalid(format!("pre-tokenizer regex {regex:?}: {}", one_line(e))))?;
        steps.push(split.into());
    }
    steps.push(ByteLevel::new(false, false, false).into());

    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(PreTokenizerSequence::new(steps)));
    tokenizer.with_decoder(Some(ByteLevel::new(false, false, false)));
    Ok(tokenizer)
}

/// SentencePiece BPE (`tokenizer.ggml.model = "llama"`).
fn spm_tokenizer(
    m: &Meta<'_>,
    tokens: &[&str],
    unk_id: Option<u32>,
    add_space_prefix: bool,
) -> Result<Tokenizer, TokenizerError> {
    let vocab = vocab_map(tokens);
    let merges = match m.string_array("tokenizer.ggml.merges")? {
        Some(merges) => parse_merges(m, &merges, &vocab)?,
        None => {
            let scores = m.float_array("tokenizer.ggml.scores")?.ok_or_else(|| {
                m.invalid("tokenizer.ggml.scores missing (a llama tokenizer without merges needs scores)")
            })?;
            if scores.len() != tokens.len() {
                return Err(m.invalid(format!(
                    "tokenizer.ggml.scores has {} entries but tokenizer.ggml.tokens has {}",
                    scores.len(),
                    tokens.len()
                )));
            }
            merges_from_scores(tokens, &scores)
        }
    };
    let mut builder = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .byte_fallback(true)
        .fuse_unk(true);
    if let Some(id) = unk_id {
        builder = builder.unk_token(tokens[id as usize].to_owned());
    }
    let bpe = builder
        .build()
        .map_err(|e| m.invalid(format!("cannot build the BPE model: {}", one_line(e))))?;

    let scheme = if add_space_prefix {
        PrependScheme::First
    } else {
        PrependScheme::Never
    };
    let replace =
        Replace::new(METASPACE.to_string(), " ").map_err(|e| m.invalid(format!("decoder: {}", one_line(e))))?;
    let mut decoders: Vec<DecoderWrapper> = vec![replace.into(), ByteFallback::new().into(), Fuse::new().into()];
    if add_space_prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }

    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(Metaspace::new(METASPACE, scheme, false)));
    tokenizer.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(tokenizer)
}

/// Derives BPE merges from SentencePiece scores the way transformers' GGUF
/// conversion does (`generate_merges`): every split of a token into two tokens
/// of the vocabulary is a merge; the splits of one token are ordered by the ids
/// of their halves, then all merges by the token's score, the character length
/// of the left half and that of the right half, each highest first. Both sorts
/// are stable. Repeated texts keep their first position and take their last
/// score and id, like the Python dictionaries the conversion builds.
fn merges_from_scores(tokens: &[&str], scores: &[f32]) -> Vec<(String, String)> {
    let mut score_of: HashMap<&str, f32> = HashMap::with_capacity(tokens.len());
    let mut id_of: HashMap<&str, usize> = HashMap::with_capacity(tokens.len());
    let mut order: Vec<&str> = Vec::with_capacity(tokens.len());
    for (id, (&token, &score)) in tokens.iter().zip(scores).enumerate() {
        if score_of.insert(token, score).is_none() {
            order.push(token);
        }
        id_of.insert(token, id);
    }
    // (left, right, score of the whole token, characters in left, characters in right)
    let mut merges: Vec<(&str, &str, f32, usize, usize)> = Vec::new();
    let mut local: Vec<(&str, &str, usize, usize)> = Vec::new();
    for &piece in &order {
        let piece_score = score_of[piece];
        local.clear();
        for (at, _) in piece.char_indices().skip(1) {
            let (left, right) = piece.split_at(at);
            if let (Some(&l), Some(&r)) = (id_of.get(left), id_of.get(right)) {
                local.push((left, right, l, r));
            }
        }
        local.sort_by_key(|&(_, _, l, r)| (l, r));
        merges.extend(
            local
                .iter()
                .map(|&(left, right, _, _)| (left, right, piece_score, left.chars().count(), right.chars().count())),
        );
    }
    merges.sort_by(|a, b| {
        b.2.partial_cmp(&a.2)
            .unwrap_or(Ordering::Equal)
            .then(b.3.cmp(&a.3))
            .then(b.4.cmp(&a.4))
    });
    merges
        .into_iter()
        .map(|(l, r, ..)| (l.to_owned(), r.to_owned()))
        .collect()
}

/// Instructions a chat template may run per rendering: a real template uses a
/// few dozen per message, so this allows conversations of thousands of turns
/// while a template from a stranger's GGUF cannot loop for ever.
pub const TEMPLATE_FUEL: u64 = 1_000_000;

/// Bytes a rendered chat template may hold.
pub const TEMPLATE_OUTPUT_LIMIT: usize = 4 << 20;

/// A writer that refuses to grow past [`TEMPLATE_OUTPUT_LIMIT`] bytes.
#[derive(Default)]
struct Bounded {
    bytes: Vec<u8>,
    over: bool,
}

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > TEMPLATE_OUTPUT_LIMIT {
            self.over = true;
            return Err(std::io::Error::other("chat template output too large"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Compiles a chat template in an environment set up like transformers'.
fn compile_template(source: &str) -> Result<Environment<'static>, minijinja::Error> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(false);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", raise_exception);
    // Macro and include recursion stays at minijinja's own bound (500 levels).
    env.set_fuel(Some(TEMPLATE_FUEL));
    env.add_template_owned(TEMPLATE_NAME, source.to_owned())?;
    Ok(env)
}

/// `raise_exception(message)` in templates: rendering fails with `message`.
fn raise_exception(message: String) -> Result<minijinja::Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

/// The chat template of a `tokenizer_config.json`: a string, or a list of
/// `{name, template}` of which the one named `default` is used.
fn config_chat_template(config: Option<&serde_json::Value>, path: &Path) -> Result<Option<String>, TokenizerError> {
    let invalid = |message: &str| TokenizerError::Invalid {
        path: path.to_path_buf(),
        message: message.to_owned(),
    };
    match config.and_then(|c| c.get("chat_template")) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(serde_json::Value::Array(items)) => {
            for item in items {
                if item.get("name").and_then(|n| n.as_str()) == Some("default") {
                    return match item.get("template") {
                        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                        _ => Err(invalid("chat_template \"default\" has no string \"template\"")),
                    };
                }
            }
            Ok(None)
        }
        Some(_) => Err(invalid(
            "chat_template is neither a string nor a list of named templates",
        )),
    }
}

/// Reads a JSON file if it exists.
fn read_optional_json(path: &Path) -> Result<Option<serde_json::Value>, TokenizerError> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|source| TokenizerError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map(Some).map_err(|e| TokenizerError::Json {
        path: path.to_path_buf(),
        message: one_line(e),
    })
}

/// Typed access to GGUF metadata with errors that name the file and the key.
struct Meta<'a> {
    meta: &'a GgufMetadata,
    path: &'a Path,
}

fn integer(value: &GgufValue) -> Option<i128> {
    Some(match *value {
        GgufValue::U8(v) => v.into(),
        GgufValue::I8(v) => v.into(),
        GgufValue::U16(v) => v.into(),
        GgufValue::I16(v) => v.into(),
        GgufValue::U32(v) => v.into(),
        GgufValue::I32(v) => v.into(),
        GgufValue::U64(v) => v.into(),
        GgufValue::I64(v) => v.into(),
        _ => return None,
    })
}

impl Meta<'_> {
    fn invalid(&self, message: impl Into<String>) -> TokenizerError {
        TokenizerError::Invalid {
            path: self.path.to_path_buf(),
            message: message.into(),
        }
    }

    fn wrong_type(&self, key: &str, expected: &str, value: &GgufValue) -> TokenizerError {
        self.invalid(format!("{key} should be {expected}, found {}", value.type_name()))
    }

    fn string(&self, key: &str) -> Result<Option<&str>, TokenizerError> {
        match self.meta.get(key) {
            None => Ok(None),
            Some(GgufValue::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.wrong_type(key, "a string", other)),
        }
    }

    fn uint(&self, key: &str) -> Result<Option<u64>, TokenizerError> {
        match self.meta.get(key) {
            None => Ok(None),
            Some(value) => match integer(value) {
                Some(v) => u64::try_from(v)
                    .map(Some)
                    .map_err(|_| self.invalid(format!("{key} = {v} is negative"))),
                None => Err(self.wrong_type(key, "an integer", value)),
            },
        }
    }

    fn boolean(&self, key: &str) -> Result<Option<bool>, TokenizerError> {
        match self.meta.get(key) {
            None => Ok(None),
            Some(GgufValue::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.wrong_type(key, "a bool", other)),
        }
    }

    fn array(&self, key: &str) -> Result<Option<&[GgufValue]>, TokenizerError> {
        match self.meta.get(key) {
            None => Ok(None),
            Some(GgufValue::Array(items)) => Ok(Some(items)),
            Some(other) => Err(self.wrong_type(key, "an array", other)),
        }
    }

    fn string_array(&self, key: &str) -> Result<Option<Vec<&str>>, TokenizerError> {
        let Some(items) = self.array(key)? else {
            return Ok(None);
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                GgufValue::String(s) => Ok(s.as_str()),
                other => Err(self.wrong_type(&format!("{key}[{i}]"), "a string", other)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    fn int_array(&self, key: &str) -> Result<Option<Vec<i64>>, TokenizerError> {
        let Some(items) = self.array(key)? else {
            return Ok(None);
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                integer(item)
                    .and_then(|v| i64::try_from(v).ok())
                    .ok_or_else(|| self.wrong_type(&format!("{key}[{i}]"), "an integer", item))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    fn float_array(&self, key: &str) -> Result<Option<Vec<f32>>, TokenizerError> {
        let Some(items) = self.array(key)? else {
            return Ok(None);
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match *item {
                GgufValue::F32(v) => Ok(v),
                GgufValue::F64(v) => Ok(v as f32),
                ref other => Err(self.wrong_type(&format!("{key}[{i}]"), "a float", other)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> GgufValue {
        GgufValue::Array(items.iter().map(|s| GgufValue::String((*s).to_owned())).collect())
    }

    fn ints(items: &[i32]) -> GgufValue {
        GgufValue::Array(items.iter().map(|&v| GgufValue::I32(v)).collect())
    }

    /// GPT-2's byte-to-character table: printable bytes map to themselves, the
    /// others to the characters from U+0100 on.
    fn byte_chars() -> Vec<char> {
        let printable = |b: u32| (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
        let mut next = 0x100;
        (0u32..256)
            .map(|b| {
                if printable(b) {
                    char::from_u32(b).unwrap_or('?')
                } else {
                    next += 1;
                    char::from_u32(next - 1).unwrap_or('?')
                }
            })
            .collect()
    }

    const GPT2_MERGES: &[&str] = &[
        "h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld", "Ġ 1", "Ġ1 2", "1 2",
    ];

    /// A byte-level vocabulary: `<|endoftext|>` (control), the 256 byte tokens,
    /// the results of [`GPT2_MERGES`], `<|im_end|>` (control), `<tool>`
    /// (user-defined) and `abc` (reachable only without merges).
    fn gpt2_meta(pre: &str) -> GgufMetadata {
        let mut tokens: Vec<String> = vec!["<|endoftext|>".into()];
        tokens.extend(byte_chars().into_iter().map(String::from));
        for merge in GPT2_MERGES {
            tokens.push(merge.replace(' ', ""));
        }
        tokens.extend(["<|im_end|>".to_owned(), "<tool>".to_owned(), "abc".to_owned()]);
        let mut types = vec![1; tokens.len()];
        types[0] = 3;
        let n = types.len();
        types[n - 3] = 3;
        types[n - 2] = 4;
        let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
        let mut meta = GgufMetadata::new();
        meta.insert("tokenizer.ggml.model".into(), GgufValue::String("gpt2".into()));
        meta.insert("tokenizer.ggml.pre".into(), GgufValue::String(pre.into()));
        meta.insert("tokenizer.ggml.tokens".into(), strings(&tokens));
        meta.insert("tokenizer.ggml.token_type".into(), ints(&types));
        meta.insert("tokenizer.ggml.merges".into(), strings(GPT2_MERGES));
        meta.insert("tokenizer.ggml.bos_token_id".into(), GgufValue::U32(0));
        meta.insert("tokenizer.ggml.eos_token_id".into(), GgufValue::U32(0));
        meta
    }

    fn gpt2(pre: &str) -> ChatTokenizer {
        ChatTokenizer::from_gguf_metadata(&gpt2_meta(pre), Path::new("tiny.gguf")).unwrap()
    }

    fn id(tok: &ChatTokenizer, token: &str) -> u32 {
        tok.token_to_id(token)
            .unwrap_or_else(|| panic!("{token:?} is not in the vocabulary"))
    }

    fn error(meta: &GgufMetadata) -> String {
        ChatTokenizer::from_gguf_metadata(meta, Path::new("bad.gguf"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn byte_level_bpe_merges_and_round_trips() {
        let tok = gpt2("gpt2");
        assert_eq!(tok.vocab_size(), 257 + GPT2_MERGES.len() + 3);
        let ids = tok.encode("hello world", false).unwrap();
        assert_eq!(ids, vec![id(&tok, "hello"), id(&tok, "Ġworld")]);
        for text in ["hello world", "Zürich 😀\n\ttabs  and  spaces ", "", "\u{0}\u{7f}é"] {
            let ids = tok.encode(text, true).unwrap();
            assert_eq!(tok.decode(&ids, false).unwrap(), text);
        }
    }

    #[test]
    fn special_and_user_defined_tokens_are_single_ids() {
        let tok = gpt2("gpt2");
        let ids = tok.encode("hello<|endoftext|>world<tool>", false).unwrap();
        assert_eq!(ids[1], 0);
        assert_eq!(ids.last(), Some(&id(&tok, "<tool>")));
        assert_eq!(tok.decode(&ids, false).unwrap(), "hello<|endoftext|>world<tool>");
        // User-defined tokens are not special, so they stay when special tokens are skipped.
        assert_eq!(tok.decode(&ids, true).unwrap(), "helloworld<tool>");
    }

    #[test]
    fn pre_tokenizer_names_select_llama_cpp_splits() {
        // GPT-2 keeps runs of digits together; smollm splits them one by one.
        let gpt = gpt2("gpt2");
        assert_eq!(gpt.encode(" 12", false).unwrap(), vec![id(&gpt, "Ġ12")]);
        let smol = gpt2("smollm");
        assert_eq!(
            smol.encode(" 12", false).unwrap(),
            vec![id(&smol, "Ġ"), id(&smol, "1"), id(&smol, "2")]
        );
        // Unknown names fall back to GPT-2.
        assert_eq!(gpt2("no-such-pre").encode(" 12", false).unwrap(), vec![id(&gpt, "Ġ12")]);
        // Llama 3 takes whole words from the vocabulary even without merges, and adds BOS.
        let llama3 = gpt2("llama-bpe");
        assert_eq!(llama3.encode("abc", false).unwrap(), vec![id(&llama3, "abc")]);
        assert_eq!(gpt.encode("abc", false).unwrap().len(), 3);
        assert!(llama3.add_bos() && !gpt.add_bos());
        assert_eq!(llama3.encode("abc", true).unwrap(), vec![0, id(&llama3, "abc")]);
        // The default list isolates punctuation runs and every regex compiles.
        for pre in [
            "default",
            "llama3",
            "qwen2",
            "falcon",
            "deepseek-llm",
            "deepseek-coder",
            "starcoder",
        ] {
            let tok = gpt2(pre);
            let text = "Hello, world!! 1234 — 日本語 it's\n\n  x";
            assert_eq!(
                tok.decode(&tok.encode(text, false).unwrap(), false).unwrap(),
                text,
                "{pre}"
            );
        }
    }

    #[test]
    fn bos_is_added_only_when_the_model_says_so() {
        let mut meta = gpt2_meta("gpt2");
        let tok = ChatTokenizer::from_gguf_metadata(&meta, Path::new("tiny.gguf")).unwrap();
        assert!(!tok.add_bos());
        assert_eq!(tok.encode("hello", true).unwrap(), tok.encode("hello", false).unwrap());
        meta.insert("tokenizer.ggml.add_bos_token".into(), GgufValue::Bool(true));
        let tok = ChatTokenizer::from_gguf_metadata(&meta, Path::new("tiny.gguf")).unwrap();
        assert_eq!(tok.encode("hello", true).unwrap(), vec![0, id(&tok, "hello")]);
        assert_eq!(tok.encode("hello", false).unwrap(), vec![id(&tok, "hello")]);
    }

    #[test]
    fn end_of_generation_ids_and_padding() {
        let mut meta = gpt2_meta("gpt2");
        let tok = ChatTokenizer::from_gguf_metadata(&meta, Path::new("tiny.gguf")).unwrap();
        let im_end = id(&tok, "<|im_end|>");
        // EOS first, then the end-of-turn tokens found by their text.
        assert_eq!(tok.eos_ids(), &[0, im_end]);
        assert!(tok.is_eos(im_end) && !tok.is_eos(5));
        assert_eq!(tok.pad_id(), 0);
        meta.insert("tokenizer.ggml.eos_token_id".into(), GgufValue::U32(im_end));
        meta.insert("tokenizer.ggml.padding_token_id".into(), GgufValue::U32(7));
        let tok = ChatTokenizer::from_gguf_metadata(&meta, Path::new("tiny.gguf")).unwrap();
        assert_eq!(tok.eos_ids(), &[im_end, 0]);
        assert_eq!(tok.pad_id(), 7);
        assert_eq!(tok.bos_id(), Some(0));
    }

    #[test]
    fn decode_rejects_ids_out_of_range() {
        let tok = gpt2("gpt2");
        let err = tok.decode(&[1, 100_000], false).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "tiny.gguf: decode: token id 100000 is out of range ({} tokens)",
                tok.vocab_size()
            )
        );
    }

    #[test]
    fn malformed_metadata_is_reported_in_one_line() {
        let mut meta = gpt2_meta("gpt2");
        meta.remove("tokenizer.ggml.tokens");
        assert_eq!(error(&meta), "bad.gguf: no tokenizer (tokenizer.ggml.tokens missing)");

        let mut meta = gpt2_meta("gpt2");
        meta.insert("tokenizer.ggml.model".into(), GgufValue::String("bert".into()));
        assert_eq!(error(&meta), "bad.gguf: unsupported tokenizer model 'bert'");

        let mut meta = gpt2_meta("gpt2");
        meta.insert("tokenizer.ggml.merges".into(), strings(&["h e", "h zz"]));
        assert_eq!(
            error(&meta),
            "bad.gguf: tokenizer.ggml.merges[1] = \"h zz\": \"zz\" is not in the vocabulary"
        );

        let mut meta = gpt2_meta("gpt2");
        meta.insert("tokenizer.ggml.merges".into(), strings(&["he"]));
        assert!(
            error(&meta).contains("merges[0] = \"he\" is not two tokens"),
            "{}",
            error(&meta)
        );

        let mut meta = gpt2_meta("gpt2");
        meta.remove("tokenizer.ggml.merges");
        assert!(error(&meta).contains("tokenizer.ggml.merges missing"));

        let mut meta = gpt2_meta("gpt2");
        meta.insert("tokenizer.ggml.token_type".into(), ints(&[1, 1]));
        assert!(error(&meta).contains("token_type has 2 entries but tokenizer.ggml.tokens has"));

        let mut meta = gpt2_meta("gpt2");
        meta.insert("tokenizer.ggml.eos_token_id".into(), GgufValue::U32(1_000_000));
        assert!(error(&meta).starts_with("bad.gguf: tokenizer.ggml.eos_token_id = 1000000 is out of range"));

        let mut meta = gpt2_meta("gpt2");
        meta.insert("tokenizer.ggml.bos_token_id".into(), GgufValue::I32(-1));
        assert_eq!(error(&meta), "bad.gguf: tokenizer.ggml.bos_token_id = -1 is negative");

        let mut meta = gpt2_meta("gpt2");
        meta.insert("tokenizer.ggml.tokens".into(), GgufValue::String("oops".into()));
        assert_eq!(
            error(&meta),
            "bad.gguf: tokenizer.ggml.tokens should be an array, found string"
        );

        let mut meta = gpt2_meta("gpt2");
        meta.insert("tokenizer.ggml.tokens".into(), GgufValue::Array(vec![GgufValue::U8(1)]));
        assert_eq!(
            error(&meta),
            "bad.gguf: tokenizer.ggml.tokens[0] should be a string, found u8"
        );
    }

    /// A SentencePiece-style vocabulary: `<unk>`, `<s>`, `</s>`, the 256 byte
    /// tokens and a few pieces whose scores imply the merges.
    fn spm_meta() -> GgufMetadata {
        let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
        let mut types = vec![2, 3, 3];
        let mut scores = vec![0.0f32; 3];
        for b in 0..=255u8 {
            tokens.push(format!("<0x{b:02X}>"));
            types.push(6);
            scores.push(0.0);
        }
        let pieces = [
            "▁h", "ll", "▁he", "▁hell", "▁hello", "or", "▁w", "▁wor", "▁world", "ld", "▁", "h", "e", "l", "o", "w",
            "r", "d",
        ];
        for (rank, piece) in pieces.iter().enumerate() {
            tokens.push((*piece).to_owned());
            types.push(1);
            scores.push(-(rank as f32));
        }
        let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
        let mut meta = GgufMetadata::new();
        meta.insert("tokenizer.ggml.model".into(), GgufValue::String("llama".into()));
        meta.insert("tokenizer.ggml.tokens".into(), strings(&tokens));
        meta.insert("tokenizer.ggml.token_type".into(), ints(&types));
        meta.insert(
            "tokenizer.ggml.scores".into(),
            GgufValue::Array(scores.into_iter().map(GgufValue::F32).collect()),
        );
        meta.insert("tokenizer.ggml.unknown_token_id".into(), GgufValue::U32(0));
        meta
    }

    #[test]
    fn sentencepiece_bpe_from_scores() {
        let tok = ChatTokenizer::from_gguf_metadata(&spm_meta(), Path::new("spm.gguf")).unwrap();
        // llama.cpp's defaults: BOS 1, EOS 2, BOS added.
        assert_eq!(tok.bos_id(), Some(1));
        assert_eq!(tok.eos_ids(), &[2]);
        assert!(tok.add_bos());
        let ids = tok.encode("hello world", true).unwrap();
        assert_eq!(ids, vec![1, id(&tok, "▁hello"), id(&tok, "▁world")]);
        assert_eq!(tok.decode(&ids, true).unwrap(), "hello world");
        assert_eq!(tok.decode(&ids, false).unwrap(), "<s> hello world");
        // Characters outside the vocabulary fall back to their UTF-8 bytes.
        let ids = tok.encode("hé", false).unwrap();
        assert_eq!(ids, vec![id(&tok, "▁h"), id(&tok, "<0xC3>"), id(&tok, "<0xA9>")]);
        assert_eq!(tok.decode(&ids, false).unwrap(), "hé");
        // Special tokens written in the text are recognised, and as in
        // transformers no `▁` is prepended after them.
        let ids = tok.encode("</s>hello", false).unwrap();
        let pieces = ["h", "e", "ll", "o"].map(|p| id(&tok, p));
        assert_eq!(ids, [&[2][..], &pieces[..]].concat());
    }

    #[test]
    fn sentencepiece_merges_follow_transformers_order() {
        let tokens = ["a", "b", "ab", "c", "abc", "bc"];
        let scores = [0.0, 0.0, -1.0, 0.0, -2.0, -1.0];
        let merges = merges_from_scores(&tokens, &scores);
        let merges: Vec<(&str, &str)> = merges.iter().map(|(l, r)| (l.as_str(), r.as_str())).collect();
        // By the merged token's score; ties broken by the longer left half, then
        // by the ids of the halves.
        assert_eq!(merges, vec![("a", "b"), ("b", "c"), ("ab", "c"), ("a", "bc")]);
    }

    fn with_template(template: &str) -> ChatTokenizer {
        let mut meta = gpt2_meta("gpt2");
        meta.insert("tokenizer.chat_template".into(), GgufValue::String(template.into()));
        ChatTokenizer::from_gguf_metadata(&meta, Path::new("chat.gguf")).unwrap()
    }

    fn user(content: &str) -> ChatMessage {
        ChatMessage {
            role: "user".into(),
            content: content.into(),
        }
    }

    #[test]
    fn chat_template_renders_like_transformers() {
        let tok = with_template(
            "{{ bos_token }}{% for m in messages %}\n  {% if m.role == 'user' %}\n<|{{ m.role }}|>{{ m.content.strip() }}{{ eos_token }}\n  {% endif %}\n{% endfor %}\n{% if add_generation_prompt %}<|assistant|>{% endif %}\n",
        );
        let msgs = [user("  hello  ")];
        assert_eq!(
            tok.apply_chat_template(&msgs, true).unwrap(),
            "<|endoftext|><|user|>hello<|endoftext|>\n<|assistant|>"
        );
        assert_eq!(
            tok.apply_chat_template(&msgs, false).unwrap(),
            "<|endoftext|><|user|>hello<|endoftext|>\n"
        );
        // The template writes the special tokens, so encode_chat adds none.
        let ids = tok.encode_chat(&msgs, false).unwrap();
        assert_eq!(ids.first(), Some(&0));
        assert_eq!(
            ids,
            tok.encode(&tok.apply_chat_template(&msgs, false).unwrap(), false)
                .unwrap()
        );
    }

    #[test]
    fn raise_exception_fails_rendering_with_its_message() {
        let tok = with_template(
            "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversations must start with a user message') }}{% endif %}ok",
        );
        assert_eq!(tok.apply_chat_template(&[user("hi")], true).unwrap(), "ok");
        let system = ChatMessage {
            role: "system".into(),
            content: "x".into(),
        };
        let err = tok.apply_chat_template(&[system], true).unwrap_err().to_string();
        assert!(err.starts_with("chat.gguf: chat template: "), "{err}");
        assert!(err.contains("Conversations must start with a user message"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn templates_that_loop_recurse_or_grow_without_bound_are_one_line_errors() {
        // 10^10 loop iterations: stopped by the fuel limit.
        let tok = with_template("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}");
        let err = tok.apply_chat_template(&[user("hi")], true).unwrap_err().to_string();
        assert!(err.starts_with("chat.gguf: chat template: "), "{err}");
        assert!(err.contains("1000000 instructions"), "{err}");
        // A macro calling itself: minijinja's recursion limit.
        let tok = with_template("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
        let err = tok.apply_chat_template(&[user("hi")], true).unwrap_err().to_string();
        assert!(
            err.starts_with("chat.gguf: chat template: ") && !err.contains('\n'),
            "{err}"
        );
        // 6.4 MB of output from a few instructions.
        let tok = with_template("{% for i in range(100) %}{{ 'x' * 64000 }}{% endfor %}");
        let err = tok.apply_chat_template(&[user("hi")], true).unwrap_err().to_string();
        assert!(err.contains("would exceed 4194304 bytes"), "{err}");
        // Just under the bound renders.
        let tok = with_template("{% for i in range(60) %}{{ 'x' * 64000 }}{% endfor %}");
        assert_eq!(tok.apply_chat_template(&[user("hi")], true).unwrap().len(), 3_840_000);
        // A conversation of a thousand turns is far inside the fuel.
        let tok = with_template("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}");
        let turns: Vec<ChatMessage> = (0..1000).map(|i| user(&format!("turn {i}"))).collect();
        assert!(tok.apply_chat_template(&turns, true).unwrap().ends_with("turn 999\n"));
    }

    #[test]
    fn missing_or_broken_templates_are_errors() {
        let tok = gpt2("gpt2");
        assert!(tok.chat_template().is_none());
        assert_eq!(
            tok.apply_chat_template(&[user("hi")], true).unwrap_err().to_string(),
            "tiny.gguf: model has no chat template"
        );
        assert!(tok.encode_chat(&[user("hi")], true).is_err());
        // A template that does not compile still leaves the tokenizer usable.
        let tok = with_template("{% for m in messages %}");
        assert!(tok.encode("hello", false).is_ok());
        let err = tok.apply_chat_template(&[user("hi")], true).unwrap_err().to_string();
        assert!(err.starts_with("chat.gguf: chat template: "), "{err}");
    }

    #[test]
    fn hf_directory_with_config_and_generation_config() {
        let dir = std::env::temp_dir().join(format!("steer-tokenizer-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        gpt2("gpt2").inner().save(dir.join("tokenizer.json"), false).unwrap();
        let config = serde_json::json!({
            "bos_token": {"content": "<|endoftext|>", "special": true},
            "eos_token": "<|im_end|>",
            "chat_template": [{"name": "default", "template": "{{ eos_token }}{{ messages[0].content }}"}],
        });
        std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
        std::fs::write(dir.join("generation_config.json"), r#"{"eos_token_id": [0, 1]}"#).unwrap();
        let tok = ChatTokenizer::from_hf_dir(&dir).unwrap();
        let im_end = id(&tok, "<|im_end|>");
        assert_eq!(tok.bos_id(), Some(0));
        assert_eq!(tok.eos_ids(), &[im_end, 0, 1]);
        assert_eq!(tok.pad_id(), im_end);
        assert_eq!(tok.apply_chat_template(&[user("hi")], false).unwrap(), "<|im_end|>hi");
        assert_eq!(
            tok.encode("hello world", true).unwrap(),
            vec![id(&tok, "hello"), id(&tok, "Ġworld")]
        );

        std::fs::write(dir.join("generation_config.json"), r#"{"eos_token_id": "x"}"#).unwrap();
        let err = ChatTokenizer::from_hf_dir(&dir).unwrap_err().to_string();
        assert!(
            err.ends_with("generation_config.json: eos_token_id is neither a token id nor a list of token ids"),
            "{err}"
        );
        std::fs::write(dir.join("tokenizer_config.json"), "{").unwrap();
        let err = ChatTokenizer::from_hf_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("tokenizer_config.json: invalid JSON: "), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
        let err = ChatTokenizer::from_hf_dir(&dir).unwrap_err().to_string();
        assert!(err.ends_with("tokenizer.json: file not found"), "{err}");
    }
}
