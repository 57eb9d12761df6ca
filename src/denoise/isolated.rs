//! Denoisers loaded from files (C plugins, TorchScript modules) in a child process: one that crashes
//! (segfault, abort, `exit`) becomes a [`DenoiseError`] of kind [`ErrorKind::Crashed`] and the
//! benchmark of the others goes on.
//!
//! The host starts `WORKER denoiser-worker --device DEVICE -- SPEC`; the `ldctq` binary is such a worker
//! (its hidden `denoiser-worker` command calls [`serve_stdio`]). The worker loads the `--denoiser` spec
//! as the in-process host does and runs every batch through [`denoise_checked`], so every check applies
//! and the outputs and errors are bit-identical to the in-process host's. It answers over its stdin
//! and stdout; what the denoiser prints to stdout goes to stderr, which the worker shares with the
//! host.
//!
//! Protocol, little-endian. The worker first sends a reply holding the denoiser's [`DenoiserInfo`] or
//! its load error. Then, for each request (`n`, `h`, `w` as three u64, then `n*h*w` f32 values), a
//! reply holding `n*h*w` f32 values or an error. A reply is a tag byte, 0 (ok) or 1 (error); JSON (the
//! info and errors) follows as a u32 byte count and the bytes. The worker exits when its stdin closes.
//!
//! With a timeout, a worker that has not loaded the denoiser, or answered a batch, in that time is
//! killed and the denoiser reported as [`ErrorKind::Timeout`].
use super::plugin::host_batch;
use super::{
    denoise_checked, DenoiseError, Denoiser, DenoiserInfo, DenoiserSpec, ErrorKind, PluginHost, SpecKind,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tch::Device;
use tch::Tensor;

/// The worker's command word: `WORKER denoiser-worker --device DEVICE -- SPEC`.
pub const WORKER_COMMAND: &str = "denoiser-worker";

/// Largest batch a worker accepts, in values (4 GiB of f32): a bound on a corrupt request.
const MAX_VALUES: u64 = 1 << 30;

const OK: u8 = 0;
const FAILED: u8 = 1;

/// One denoiser (a plugin state, a module) in its own worker process (see the module docs).
pub struct IsolatedDenoiser {
    child: Child,
    /// `None` once closed (the worker then exits).
    requests: Option<BufWriter<ChildStdin>>,
    replies: Replies,
    info: DenoiserInfo,
    who: String,
}

/// The worker's stdout, read with an optional deadline per reply.
struct Replies {
    out: ChildStdout,
    timeout: Option<Duration>,
    deadline: Option<Instant>,
}

impl Replies {
    /// Starts the clock for the next reply.
    fn arm(&mut self) {
        self.deadline = self.timeout.map(|t| Instant::now() + t);
    }
}

impl Read for Replies {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        #[cfg(unix)]
        if let Some(deadline) = self.deadline {
            use std::os::fd::AsRawFd;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                let mut fd = libc::pollfd { fd: self.out.as_raw_fd(), events: libc::POLLIN, revents: 0 };
                let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
                // SAFETY: one valid pollfd.
                match unsafe { libc::poll(&mut fd, 1, ms) } {
                    0 => continue, // the loop's check reports the timeout
                    n if n > 0 => break,
                    _ => {
                        let e = io::Error::last_os_error();
                        if e.kind() != io::ErrorKind::Interrupted {
                            return Err(e);
                        }
                    }
                }
            }
        }
        self.out.read(buf)
    }
}

impl std::fmt::Debug for IsolatedDenoiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IsolatedDenoiser").field("plugin", &self.who).field("pid", &self.child.id()).finish()
    }
}

impl IsolatedDenoiser {
    /// Starts `worker` on `spec` (TorchScript modules onto `device`) and waits for it to load the
    /// denoiser: load, ABI and `create` failures are the in-process host's errors, a crash while
    /// loading is [`ErrorKind::Crashed`]. With `timeout`, loading and each batch must finish within it
    /// (on Unix).
    pub fn spawn(
        worker: &Path,
        spec: &DenoiserSpec,
        device: Device,
        timeout: Option<Duration>,
    ) -> Result<Self, DenoiseError> {
        let who = match &spec.kind {
            SpecKind::Plugin { path, .. } => format!("plugin {}", path.display()),
            SpecKind::TorchScript { path } => format!("torchscript {}", path.display()),
            SpecKind::Builtin { name, .. } => format!("builtin {name}"),
        };
        let mut child = Command::new(worker)
            .arg(WORKER_COMMAND)
            .args(["--device", &crate::placement::device_name(device), "--"])
            .arg(&spec.text)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                DenoiseError::new(&who, ErrorKind::Load, format!("cannot start {}: {e}", worker.display()))
            })?;
        let requests = child.stdin.take().map(BufWriter::new);
        let out = child.stdout.take().expect("stdout is piped");
        let replies = Replies { out, timeout, deadline: None };
        let info = DenoiserInfo::rust(""); // replaced by the worker's answer
        let mut this = Self { child, requests, replies, info, who };
        this.replies.arm();
        match read_reply(&mut this.replies, read_json::<DenoiserInfo>) {
            Ok(Ok(info)) => {
                this.who = info.label();
                this.info = info;
                Ok(this)
            }
            Ok(Err(e)) => Err(e),
            Err(e) => Err(this.died(e, "while loading")),
        }
    }

    fn exchange(&mut self, input: &[f32], dims: [i64; 3]) -> io::Result<Result<Vec<f32>, DenoiseError>> {
        let requests = self.requests.as_mut().ok_or(io::ErrorKind::BrokenPipe)?;
        for d in dims {
            requests.write_all(&(d as u64).to_le_bytes())?;
        }
        write_f32s(requests, input)?;
        requests.flush()?;
        self.replies.arm();
        read_reply(&mut self.replies, |r| read_f32s(r, input.len()))
    }

    /// The error for a worker that stopped answering (`e`): timed out (then killed), or how it ended.
    fn died(&mut self, e: io::Error, doing: &str) -> DenoiseError {
        self.requests = None;
        if e.kind() == io::ErrorKind::TimedOut {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let secs = self.replies.timeout.unwrap_or_default().as_secs_f64();
            return DenoiseError::new(
                self.who.clone(),
                ErrorKind::Timeout,
                format!("it did not finish within the timeout of {secs} s {doing}; its worker was killed"),
            );
        }
        let how = match wait_or_kill(&mut self.child, Duration::from_secs(5)) {
            Ok(status) => describe(status),
            Err(e) => format!("stopped answering ({e})"),
        };
        DenoiseError::new(
            self.who.clone(),
            ErrorKind::Crashed,
            format!("its worker process {how} {doing} (see its messages on stderr)"),
        )
    }
}

impl Denoiser for IsolatedDenoiser {
    fn info(&self) -> DenoiserInfo {
        self.info.clone()
    }

    fn denoise(&mut self, images: &Tensor) -> Result<Tensor, DenoiseError> {
        let (input, [n, h, w]) = host_batch(images, &self.who)?;
        match self.exchange(&input, [n, h, w]) {
            Ok(Ok(out)) => Ok(Tensor::from_slice(&out).view([n, 1, h, w]).to_device(images.device())),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(self.died(e, &format!("while denoising a batch of {n} x {h} x {w}"))),
        }
    }
}

impl Drop for IsolatedDenoiser {
    fn drop(&mut self) {
        self.requests = None; // EOF: the worker destroys the state and exits
        let _ = wait_or_kill(&mut self.child, Duration::from_secs(10));
    }
}

/// Waits for `child` up to `patience`, then kills it.
fn wait_or_kill(child: &mut Child, patience: Duration) -> io::Result<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if start.elapsed() > patience {
            child.kill()?;
            return child.wait();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn describe(status: ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            let name = match sig {
                libc::SIGSEGV => " (SIGSEGV)",
                libc::SIGABRT => " (SIGABRT)",
                libc::SIGBUS => " (SIGBUS)",
                libc::SIGFPE => " (SIGFPE)",
                libc::SIGILL => " (SIGILL)",
                libc::SIGKILL => " (SIGKILL)",
                _ => "",
            };
            return format!("died of signal {sig}{name}");
        }
    }
    match status.code() {
        Some(0) => "exited (status 0) without answering".into(),
        Some(code) => format!("exited with status {code}"),
        None => format!("ended ({status})"),
    }
}

/// The worker: loads `spec` (TorchScript modules onto `device`), sends its info (or the load error),
/// then answers requests from `input` until it closes. I/O errors end the worker; a failing batch is a
/// reply.
pub fn serve(spec: &str, device: Device, input: &mut impl Read, output: &mut impl Write) -> io::Result<()> {
    let loaded = DenoiserSpec::parse(spec).and_then(|s| s.load(device, &PluginHost::InProcess));
    let mut denoiser = match loaded {
        Ok(d) => {
            write_json(output, OK, &d.info())?;
            d
        }
        Err(e) => return write_json(output, FAILED, &e),
    };
    loop {
        let mut head = [0u8; 24];
        match input.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let dims: [u64; 3] =
            std::array::from_fn(|i| u64::from_le_bytes(head[8 * i..8 * i + 8].try_into().unwrap()));
        let total = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d)).filter(|&t| t <= MAX_VALUES);
        let Some(total) = total else {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("request of {dims:?} values")));
        };
        let [n, h, w] = dims.map(|d| d as i64);
        let x = Tensor::from_slice(&read_f32s(input, total as usize)?).view([n, 1, h, w]);
        let out = denoise_checked(denoiser.as_mut(), &x)
            .and_then(|y| host_batch(&y, &denoiser.info().label()).map(|(values, _)| values));
        match out {
            Ok(values) => {
                output.write_all(&[OK])?;
                write_f32s(output, &values)?;
            }
            Err(e) => write_json(output, FAILED, &e)?,
        }
        output.flush()?;
    }
}

/// [`serve`] on this process's stdin and stdout. The protocol keeps a private copy of stdout and fd 1
/// becomes stderr, so that what the denoiser prints cannot corrupt the replies.
pub fn serve_stdio(spec: &str, device: Device) -> io::Result<()> {
    let mut input = BufReader::new(io::stdin().lock());
    #[cfg(unix)]
    {
        use std::os::fd::FromRawFd;
        // SAFETY: plain fd calls; the duplicate is owned by the File below and by nothing else.
        let proto = unsafe { libc::dup(1) };
        if proto < 0 || unsafe { libc::dup2(2, 1) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut output = BufWriter::new(unsafe { std::fs::File::from_raw_fd(proto) });
        serve(spec, device, &mut input, &mut output)
    }
    #[cfg(not(unix))]
    serve(spec, device, &mut input, &mut BufWriter::new(io::stdout().lock()))
}

fn write_json(out: &mut impl Write, tag: u8, value: &impl Serialize) -> io::Result<()> {
    let bytes = serde_json::to_vec(value)?;
    out.write_all(&[tag])?;
    out.write_all(&(bytes.len() as u32).to_le_bytes())?;
    out.write_all(&bytes)?;
    out.flush()
}

fn read_json<T: DeserializeOwned>(r: &mut impl Read) -> io::Result<T> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let mut bytes = vec![0u8; u32::from_le_bytes(len) as usize];
    r.read_exact(&mut bytes)?;
    serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// A reply: `ok` reads the payload after tag 0; tag 1 carries a [`DenoiseError`].
fn read_reply<R: Read, T>(
    r: &mut R,
    ok: impl FnOnce(&mut R) -> io::Result<T>,
) -> io::Result<Result<T, DenoiseError>> {
    let mut tag = [0u8; 1];
    r.read_exact(&mut tag)?;
    match tag[0] {
        OK => ok(r).map(Ok),
        FAILED => read_json::<DenoiseError>(r).map(Err),
        t => Err(io::Error::new(io::ErrorKind::InvalidData, format!("reply tag {t}"))),
    }
}

fn write_f32s(out: &mut impl Write, values: &[f32]) -> io::Result<()> {
    let mut bytes = Vec::with_capacity(values.len() * 4);
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    out.write_all(&bytes)
}

fn read_f32s(r: &mut impl Read, count: usize) -> io::Result<Vec<f32>> {
    let mut bytes = vec![0u8; count * 4];
    r.read_exact(&mut bytes)?;
    Ok(bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect())
}
