//! Subcommands of the `ldctq` tool.
mod embed;

use clap::{Parser, Subcommand};

/// A differentiable, no-reference quality criterion for low-dose CT (MedSigLIP + prompt FiLM).
#[derive(Parser, Debug)]
#[command(name = "ldctq", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Image features, patch tokens or text features of a SigLIP checkpoint, as .npy.
    Embed(embed::Args),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Embed(args) => embed::run(args),
    }
}

/// Options shared by the commands that run a model.
#[derive(clap::Args, Debug, Clone)]
pub struct Runtime {
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// f32, bf16 or f16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}

impl Runtime {
    pub fn placement(&self) -> anyhow::Result<ldctq::siglip::Placement> {
        Ok(ldctq::siglip::Placement {
            device: ldctq::device::parse_device(&self.device)?,
            kind: ldctq::device::parse_kind(&self.dtype)?,
        })
    }
}
