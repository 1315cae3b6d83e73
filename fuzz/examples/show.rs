//! Prints what a fuzz input means to its target, for triage:
//! `cargo run --example show -- helper_reply fuzz/artifacts/helper_reply/crash-…`
//! (from `fuzz/`, paths relative to it).

use rask_fuzz::{helper, split_message, FrameInput};

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [target, path] = &args[..] else {
        eprintln!("usage: show frame_decode|message_decode|helper_reply FILE");
        std::process::exit(2);
    };
    let data = std::fs::read(path)?;
    match target.as_str() {
        "frame_decode" => match FrameInput::parse(&data) {
            Some(input) => {
                println!(
                    "limits: {} bytes, {} frames; chunking {}",
                    input.max_message_bytes, input.max_frames, input.chunking
                );
                let sizes: Vec<usize> = input.chunks().map(<[u8]>::len).collect();
                println!("reads: {sizes:?}");
                println!("stream: {:02x?}", input.stream);
            }
            None => println!("too short"),
        },
        "message_decode" => {
            for (i, f) in split_message(&data).unwrap_or_default().iter().enumerate() {
                println!("frame {i}: {f:02x?}");
            }
        }
        "helper_reply" => {
            for m in helper::messages(&data) {
                println!("{m:?}");
            }
        }
        other => eprintln!("unknown target {other}"),
    }
    Ok(())
}
