using System.CommandLine;

namespace Deid.Cli.Commands;

public static class AnonymizeCommand
{
    public static Command Create()
    {
        var cmd = new Command("anonymize", "(not implemented yet)");
        cmd.SetAction(_ => { Console.Error.WriteLine("deid: anonymize is not implemented yet"); return 2; });
        return cmd;
    }
}
