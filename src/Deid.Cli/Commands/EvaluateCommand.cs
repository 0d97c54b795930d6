using System.CommandLine;

namespace Deid.Cli.Commands;

public static class EvaluateCommand
{
    public static Command Create()
    {
        var cmd = new Command("evaluate", "(not implemented yet)");
        cmd.SetAction(_ => { Console.Error.WriteLine("deid: evaluate is not implemented yet"); return 2; });
        return cmd;
    }
}
