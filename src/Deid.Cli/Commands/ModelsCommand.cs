using System.CommandLine;

namespace Deid.Cli.Commands;

public static class ModelsCommand
{
    public static Command Create()
    {
        var cmd = new Command("models", "Model weights: what is present (list), fetching what registries serve (fetch), converting published checkpoints (import), checking recorded hashes (verify).");
        cmd.Subcommands.Add(ModelsListCommand.Create());
        cmd.Subcommands.Add(ModelsFetchCommand.Create());
        cmd.Subcommands.Add(ModelsImportCommand.Create());
        cmd.Subcommands.Add(ModelsVerifyCommand.Create());
        return cmd;
    }

    /// <summary>The <c>--models</c> option every models subcommand takes.</summary>
    public static Option<string?> DirectoryOption(string what = "models directory") =>
        new("--models") { Description = $"{what} (default: $DEID_MODELS, else models/ in the repository)" };
}
