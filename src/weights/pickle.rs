//! A restricted reader of the pickles inside PyTorch's `.pth` files: it runs no code. Python's
//! own unpickler calls whatever global a pickle names (a `.pth` from the internet can run any
//! program that way); this one knows the few globals a state dict uses (ordered dicts, the
//! tensor rebuild functions, the float storage classes) and refuses a pickle that names any
//! other. No crate does this: `serde-pickle` has no persistent ids (torch's storages) and
//! replaces unknown globals rather than refusing them.
//!
//! The opcodes are those of protocols 2 to 4, as `pickletools` documents them
//! (<https://github.com/python/cpython/blob/v3.11.0/Lib/pickletools.py>); torch writes protocol 2
//! (<https://github.com/pytorch/pytorch/blob/v2.8.0/torch/serialization.py>,
//! `_save`/`_load`).

use super::Dtype;

/// The most values the memo and the stack may hold: far over any state dict's (a 23-block
/// ESRGAN has ~1500), far under what would exhaust memory.
const MAX_VALUES: usize = 1 << 20;
/// The deepest a value may nest (a state dict nests 3 levels).
const MAX_DEPTH: usize = 64;

/// A storage a tensor views, as its persistent id names it: `('storage', torch.FloatStorage,
/// key, location, numel)`; its bytes are the archive's `data/{key}`.
#[derive(Clone, Debug, PartialEq)]
pub struct StorageRef {
    pub dtype: Dtype,
    pub key: String,
    pub numel: usize,
}

/// A tensor as `torch._utils._rebuild_tensor_v2` rebuilds it: a strided view of a storage.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorRef {
    pub storage: StorageRef,
    pub offset: usize,
    pub shape: Vec<usize>,
    pub strides: Vec<usize>,
}

/// The globals a state dict's pickle may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Global {
    OrderedDict,
    RebuildTensor,
    RebuildParameter,
    Storage(Dtype),
}

/// Each allowed global: its module, its name, what it is.
const GLOBALS: &[(&str, &str, Global)] = &[
    ("collections", "OrderedDict", Global::OrderedDict),
    ("torch._utils", "_rebuild_tensor_v2", Global::RebuildTensor),
    (
        "torch._utils",
        "_rebuild_parameter",
        Global::RebuildParameter,
    ),
    ("torch", "FloatStorage", Global::Storage(Dtype::F32)),
    ("torch", "HalfStorage", Global::Storage(Dtype::F16)),
    ("torch", "BFloat16Storage", Global::Storage(Dtype::BF16)),
    ("torch", "DoubleStorage", Global::Storage(Dtype::F64)),
    ("torch", "LongStorage", Global::Storage(Dtype::I64)),
];

/// A value of the pickle's little language.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// Entries in insertion order (a state dict's order).
    Dict(Vec<(Value, Value)>),
    Global(Global),
    Storage(StorageRef),
    Tensor(TensorRef),
}

/// Why a pickle was not read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PickleError {
    #[error(
        "it names the Python global `{0}`, which a weight file never needs: refused (nothing in a \
         weight file is run; convert it to .safetensors with a tool you trust)"
    )]
    Global(String),
    #[error("opcode 0x{0:02x} at byte {1} is not one a state dict uses")]
    Opcode(u8, usize),
    #[error("the pickle ends in the middle of an instruction")]
    Truncated,
    #[error("the pickle is malformed: {0}")]
    Malformed(String),
    #[error("the pickle holds more than {MAX_VALUES} values or nests deeper than {MAX_DEPTH}")]
    TooLarge,
}

type Result<T> = std::result::Result<T, PickleError>;

fn malformed<T>(what: impl Into<String>) -> Result<T> {
    Err(PickleError::Malformed(what.into()))
}

/// Reads one pickle: the value its `STOP` returns.
pub fn read(bytes: &[u8]) -> Result<Value> {
    let mut vm = Machine {
        input: bytes,
        at: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: std::collections::HashMap::new(),
    };
    loop {
        let at = vm.at;
        let op = vm.byte()?;
        if op == b'.' {
            return vm.pop();
        }
        vm.step(op, at)?;
        if vm.stack.len() + vm.memo.len() > MAX_VALUES || vm.marks.len() > MAX_DEPTH {
            return Err(PickleError::TooLarge);
        }
    }
}

struct Machine<'a> {
    input: &'a [u8],
    at: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: std::collections::HashMap<u32, Value>,
}

impl Machine<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self.at.checked_add(n).ok_or(PickleError::Truncated)?;
        let bytes = self.input.get(self.at..end).ok_or(PickleError::Truncated)?;
        self.at = end;
        Ok(bytes)
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<usize> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")) as usize)
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn line(&mut self) -> Result<String> {
        let rest = &self.input[self.at..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(PickleError::Truncated)?;
        let line = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.at += end + 1;
        Ok(line)
    }

    fn text(&mut self, n: usize) -> Result<String> {
        match std::str::from_utf8(self.take(n)?) {
            Ok(s) => Ok(s.to_string()),
            Err(_) => malformed("a string is not UTF-8"),
        }
    }

    fn pop(&mut self) -> Result<Value> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return malformed("a value is taken from below a mark");
        }
        self.stack
            .pop()
            .map_or_else(|| malformed("the stack is empty"), Ok)
    }

    fn top(&mut self) -> Result<&mut Value> {
        self.stack
            .last_mut()
            .map_or_else(|| malformed("the stack is empty"), Ok)
    }

    /// The values pushed since the last mark, the mark removed.
    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let Some(mark) = self.marks.pop() else {
            return malformed("no mark to pop to");
        };
        Ok(self.stack.split_off(mark))
    }

    fn push_global(&mut self, module: &str, name: &str) -> Result<()> {
        match GLOBALS.iter().find(|(m, n, _)| *m == module && *n == name) {
            Some(&(_, _, g)) => {
                self.stack.push(Value::Global(g));
                Ok(())
            }
            None => Err(PickleError::Global(format!("{module}.{name}"))),
        }
    }

    fn memo_get(&mut self, key: u32) -> Result<()> {
        match self.memo.get(&key) {
            Some(v) => {
                self.stack.push(v.clone());
                Ok(())
            }
            None => malformed(format!("memo key {key} was never stored")),
        }
    }

    fn memo_put(&mut self, key: u32) -> Result<()> {
        let top = self.top()?.clone();
        self.memo.insert(key, top);
        Ok(())
    }

    fn step(&mut self, op: u8, at: usize) -> Result<()> {
        let value = match op {
            0x80 => {
                self.byte()?; // PROTO n
                return Ok(());
            }
            0x95 => {
                self.take(8)?; // FRAME length: a hint for buffered readers
                return Ok(());
            }
            b'(' => {
                self.marks.push(self.stack.len()); // MARK
                return Ok(());
            }
            b'q' => return self.byte().and_then(|k| self.memo_put(k as u32)), // BINPUT
            b'r' => return self.u32().and_then(|k| self.memo_put(k)),         // LONG_BINPUT
            0x94 => return self.memo_put(self.memo.len() as u32),             // MEMOIZE
            b'h' => return self.byte().and_then(|k| self.memo_get(k as u32)), // BINGET
            b'j' => return self.u32().and_then(|k| self.memo_get(k)),         // LONG_BINGET
            b'c' => {
                let (module, name) = (self.line()?, self.line()?); // GLOBAL
                return self.push_global(&module, &name);
            }
            0x93 => {
                let name = self.pop()?; // STACK_GLOBAL
                let module = self.pop()?;
                let (Value::Str(module), Value::Str(name)) = (module, name) else {
                    return malformed("STACK_GLOBAL without two strings");
                };
                return self.push_global(&module, &name);
            }
            b's' | b'u' | b'a' | b'e' | b'b' => return self.update(op),
            b'R' => {
                let args = self.pop()?; // REDUCE
                let callable = self.pop()?;
                call(callable, args)?
            }
            b'Q' => persistent(self.pop()?)?, // BINPERSID
            _ => self.literal(op, at)?,
        };
        self.stack.push(value);
        Ok(())
    }

    /// The opcodes that change the value on top of the stack: items into dicts, elements into
    /// lists, an object's state (ignored: a state dict's `_metadata`, a tensor's nothing).
    fn update(&mut self, op: u8) -> Result<()> {
        let items = match op {
            b's' => {
                let v = self.pop()?;
                let k = self.pop()?;
                vec![k, v]
            }
            b'a' => vec![self.pop()?],
            b'b' => {
                self.pop()?; // BUILD's state
                return Ok(());
            }
            _ => self.pop_mark()?, // SETITEMS, APPENDS
        };
        match (self.top()?, op) {
            (Value::Dict(entries), b's' | b'u') => {
                if items.len() % 2 != 0 {
                    return malformed("SETITEMS with an odd number of values");
                }
                let mut items = items.into_iter();
                while let (Some(k), Some(v)) = (items.next(), items.next()) {
                    entries.push((k, v));
                }
                Ok(())
            }
            (Value::List(list), b'a' | b'e') => {
                list.extend(items);
                Ok(())
            }
            _ => malformed("items added to a value that is not a dict or list"),
        }
    }

    /// The opcodes that push a literal (or a container built from marked values).
    fn literal(&mut self, op: u8, at: usize) -> Result<Value> {
        Ok(match op {
            b'N' => Value::None,
            0x88 => Value::Bool(true),
            0x89 => Value::Bool(false),
            b'K' => Value::Int(self.byte()? as i64),
            b'M' => Value::Int(self.u16()? as i64),
            b'J' => Value::Int(i32::from_le_bytes(self.take(4)?.try_into().expect("4")) as i64),
            0x8a => {
                let n = self.byte()? as usize; // LONG1: n-byte little-endian two's complement
                let bytes = self.take(n)?;
                if n > 8 {
                    return malformed("an integer wider than 64 bits");
                }
                let mut buf = if bytes.last().is_some_and(|b| b & 0x80 != 0) {
                    [0xff; 8]
                } else {
                    [0; 8]
                };
                buf[..n].copy_from_slice(bytes);
                Value::Int(i64::from_le_bytes(buf))
            }
            b'G' => Value::Float(f64::from_be_bytes(self.take(8)?.try_into().expect("8"))),
            b'X' => {
                let n = self.u32()? as usize;
                Value::Str(self.text(n)?)
            }
            0x8c | b'U' => {
                let n = self.byte()? as usize;
                Value::Str(self.text(n)?)
            }
            b'T' => {
                let n = self.u32()? as usize;
                Value::Str(self.text(n)?)
            }
            b'C' => {
                let n = self.byte()? as usize;
                Value::Bytes(self.take(n)?.to_vec())
            }
            b'B' => {
                let n = self.u32()? as usize;
                Value::Bytes(self.take(n)?.to_vec())
            }
            b'}' => Value::Dict(Vec::new()),
            b']' => Value::List(Vec::new()),
            b')' => Value::Tuple(Vec::new()),
            b't' => Value::Tuple(self.pop_mark()?),
            b'l' => Value::List(self.pop_mark()?),
            b'd' => {
                let items = self.pop_mark()?;
                self.stack.push(Value::Dict(Vec::new()));
                self.marks.push(self.stack.len());
                self.stack.extend(items);
                self.update(b'u')?;
                return self.pop();
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize; // TUPLE1..3
                let len = self.stack.len();
                if len < n || self.marks.last().is_some_and(|&m| m > len - n) {
                    return malformed("a tuple of values that are not there");
                }
                Value::Tuple(self.stack.split_off(len - n))
            }
            _ => return Err(PickleError::Opcode(op, at)),
        })
    }
}

/// What a call of an allowed global returns.
fn call(callable: Value, args: Value) -> Result<Value> {
    let Value::Tuple(args) = args else {
        return malformed("REDUCE's arguments are not a tuple");
    };
    match callable {
        Value::Global(Global::OrderedDict) if args.is_empty() => Ok(Value::Dict(Vec::new())),
        Value::Global(Global::RebuildTensor) => rebuild_tensor(args),
        Value::Global(Global::RebuildParameter) => match args.into_iter().next() {
            Some(tensor @ Value::Tensor(_)) => Ok(tensor),
            _ => malformed("_rebuild_parameter without a tensor"),
        },
        other => malformed(format!("a call of {other:?}")),
    }
}

/// `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks,
/// [metadata])`, checked to stay inside its storage.
fn rebuild_tensor(args: Vec<Value>) -> Result<Value> {
    let mut args = args.into_iter();
    let (Some(Value::Storage(storage)), Some(Value::Int(offset)), Some(size), Some(stride)) =
        (args.next(), args.next(), args.next(), args.next())
    else {
        return malformed("_rebuild_tensor_v2's arguments");
    };
    let (shape, strides) = (usizes(size)?, usizes(stride)?);
    let offset = usize::try_from(offset).or_else(|_| malformed("a negative storage offset"))?;
    if shape.len() != strides.len() {
        return malformed("a tensor's size and stride differ in rank");
    }
    let numel = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    let last = shape.iter().zip(&strides).try_fold(offset, |at, (&d, &s)| {
        at.checked_add(d.saturating_sub(1).checked_mul(s)?)
    });
    match (numel, last) {
        (Some(0), _) => {}
        (Some(_), Some(last)) if last < storage.numel => {}
        _ => return malformed("a tensor reaches past the end of its storage"),
    }
    Ok(Value::Tensor(TensorRef {
        storage,
        offset,
        shape,
        strides,
    }))
}

fn usizes(value: Value) -> Result<Vec<usize>> {
    let Value::Tuple(items) = value else {
        return malformed("a tensor's size or stride is not a tuple");
    };
    items
        .into_iter()
        .map(|v| match v {
            Value::Int(i) if i >= 0 => Ok(i as usize),
            _ => malformed("a tensor's size or stride is not a non-negative integer"),
        })
        .collect()
}

/// A persistent id: only torch's storages, `('storage', class, key, location, numel)`.
fn persistent(pid: Value) -> Result<Value> {
    let Value::Tuple(items) = pid else {
        return malformed("a persistent id that is not a tuple");
    };
    match items.as_slice() {
        [Value::Str(kind), Value::Global(Global::Storage(dtype)), Value::Str(key), _, Value::Int(numel)]
            if kind == "storage" && *numel >= 0 =>
        {
            Ok(Value::Storage(StorageRef {
                dtype: *dtype,
                key: key.clone(),
                numel: *numel as usize,
            }))
        }
        _ => malformed("a persistent id that is not a float storage"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_global_outside_the_table_is_refused_before_anything_is_called() {
        // protocol 2: GLOBAL 'os system', 'echo' as a tuple, REDUCE, STOP
        let pickle = b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00echoq\x01\x85q\x02Rq\x03.";
        assert_eq!(read(pickle), Err(PickleError::Global("os.system".into())));
        let stack_global = b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93.";
        assert_eq!(
            read(stack_global),
            Err(PickleError::Global("builtins.eval".into()))
        );
    }

    #[test]
    fn an_ordered_dict_of_literals_reads_in_order() {
        // OrderedDict() with SETITEMS {'a': 1, 'b': -2.5}
        let mut p = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01(X\x01\x00\x00\x00aK\x01X\x01\x00\x00\x00bG".to_vec();
        p.extend((-2.5f64).to_be_bytes());
        p.extend(b"u.");
        let expected = Value::Dict(vec![
            (Value::Str("a".into()), Value::Int(1)),
            (Value::Str("b".into()), Value::Float(-2.5)),
        ]);
        assert_eq!(read(&p), Ok(expected));
    }

    #[test]
    fn broken_pickles_are_errors_not_panics() {
        for bad in [
            &b""[..],
            b"\x80",
            b"(",
            b"u.",
            b"h\x05.",
            b"K",
            b"\xff.",
            b"t.",
        ] {
            assert!(read(bad).is_err(), "{bad:?}");
        }
        let deep = vec![b'('; MAX_DEPTH + 2];
        assert_eq!(read(&deep), Err(PickleError::TooLarge));
    }
}
