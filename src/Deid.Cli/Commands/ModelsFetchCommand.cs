using System.CommandLine;
using Deid.Models;

namespace Deid.Cli.Commands;

/// <summary><c>deid models fetch</c>: places every model with a scriptable public source into the models directory.</summary>
public static class ModelsFetchCommand
{
    public static Command Create()
    {
        var dir = ModelsCommand.DirectoryOption();
        var cmd = new Command("fetch", $"Download the face-api.js weights ({ModelStore.FaceApiPackage}) and the faceplugin recognizer via npm, link the dlib predictor, record sha256s in manifest.json");
        cmd.Options.Add(dir);
        cmd.SetAction((parse, ct) =>
        {
            var store = new ModelStore(parse.GetValue(dir));
            Console.WriteLine($"models directory: {store.Root}");
            var problems = store.Fetch(msg => Console.WriteLine("  " + msg), ct: ct);
            foreach (var p in problems) Console.Error.WriteLine($"deid: error: {p}");
            var missing = store.List().Where(s => !s.Present).Select(s => s.Entry.Name).ToList();
            if (missing.Count > 0)
                Console.WriteLine($"not fetchable automatically (see `deid models list`): {string.Join(", ", missing)}");
            return Task.FromResult(problems.Count == 0 ? 0 : CliErrors.Failure);
        });
        return cmd;
    }
}
