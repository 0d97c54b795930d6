using System.CommandLine;

namespace Deid.Cli.Commands;

public static class ModelsCommand
{
    public static Command Create()
    {
        var cmd = new Command("models", "(not implemented yet)");
        cmd.SetAction(_ => { Console.Error.WriteLine("deid: models is not implemented yet"); return 2; });
        return cmd;
    }
}
