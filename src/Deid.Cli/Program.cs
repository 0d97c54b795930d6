using System.CommandLine;
using Deid.Cli.Commands;

namespace Deid.Cli;

public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        Deid.Media.NativeMemory.TuneForStreaming();
        var root = new RootCommand("Deid: de-identify faces in video and reenact still photos.");
        root.Subcommands.Add(AnonymizeCommand.Create());
        root.Subcommands.Add(ModelsCommand.Create());
        root.Subcommands.Add(EvaluateCommand.Create());
        // Ctrl-C cancels the token handed to every command; each command cleans up its temp output.
        var config = new InvocationConfiguration { EnableDefaultExceptionHandler = false };
        try
        {
            return await root.Parse(args).InvokeAsync(config);
        }
        catch (Exception e)
        {
            return CliErrors.Report(e);
        }
    }
}
