using System.CommandLine;
using Deid.Cli.Commands;

namespace Deid.Cli;

public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        Deid.Media.NativeMemory.TuneForStreaming();
        Deid.Media.OpenCvThreads.TuneForStreaming();
        if (Deid.Models.TorchSharpLifetimes.Problem is { } unsafeTorch)
        {
            Console.Error.WriteLine($"deid: error: {unsafeTorch}");
            return CliErrors.Failure;
        }
        var root = new RootCommand("Deid: de-identify faces in video and reenact still photos.");
        root.Subcommands.Add(AnonymizeCommand.Create());
        root.Subcommands.Add(ReenactCommand.Create());
        root.Subcommands.Add(ModelsCommand.Create());
        root.Subcommands.Add(EvaluateCommand.Create());
        root.Subcommands.Add(BatchCommand.Create());
        root.Subcommands.Add(GenerateDatasetCommand.Create());
        root.Subcommands.Add(TrainCommand.Create());
        // Ctrl-C cancels the token handed to every command; each command cleans up its temp output.
        // The default 2 s is too short for a loaded machine to unwind every stage (and, in a batch, several clips)
        // and delete the temp outputs: the process would exit under them.
        var config = new InvocationConfiguration { EnableDefaultExceptionHandler = false, ProcessTerminationTimeout = TimeSpan.FromSeconds(30) };
        // Weights loaded without a manifest record are reported once the command has succeeded, whatever the command:
        // a failing one prints its one error line and nothing else.
        var weightWarnings = new System.Collections.Concurrent.ConcurrentQueue<string>();
        Deid.Models.ModelStore.WarningSink = weightWarnings.Enqueue;
        int code;
        try
        {
            var parsed = root.Parse(args);
            if (parsed.Errors.Count > 0 && !IsBareCommandGroup(parsed)) return CliErrors.Usage(parsed);
            code = await parsed.InvokeAsync(config);
        }
        catch (Exception e)
        {
            return CliErrors.Report(e);
        }
        if (code == 0)
            foreach (var w in weightWarnings.Distinct()) Console.Error.WriteLine($"deid: warning: {w}");
        return code;
    }

    /// <summary>`deid` or `deid models` alone: the help listing the subcommands is the useful answer there.</summary>
    private static bool IsBareCommandGroup(ParseResult parsed) =>
        parsed.CommandResult.Command.Subcommands.Count > 0 && parsed.Tokens.All(t => t.Type == System.CommandLine.Parsing.TokenType.Command);
}
