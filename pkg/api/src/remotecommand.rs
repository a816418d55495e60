//! The wire constants of Kubernetes' remote-command WebSocket protocol (`v5.channel.k8s.io`),
//! shared by the apiserver that relays `pods/exec` and `pods/attach`, the kubelet that serves
//! them and rkubectl that speaks them: every binary message starts with a channel byte.

/// The subprotocol (what kubectl 1.30 and later offer first).
pub const PROTOCOL: &str = "v5.channel.k8s.io";
/// The client's input.
pub const STDIN: u8 = 0;
/// The process's standard output (everything, with a terminal).
pub const STDOUT: u8 = 1;
/// The process's standard error.
pub const STDERR: u8 = 2;
/// The final `Status` (success, or the exit code as a `NonZeroExitCode` failure).
pub const STATUS: u8 = 3;
/// A terminal size, `{"Width":…,"Height":…}`.
pub const RESIZE: u8 = 4;
/// v5's close message: its second byte names the channel the sender closes.
pub const CLOSE: u8 = 255;
