using System.CommandLine;
using Deid.Models;
using Spectre.Console;

namespace Deid.Cli.Commands;

/// <summary><c>deid models verify</c>: re-hashes every file the store's manifest records; non-zero exit when any differs.</summary>
public static class ModelsVerifyCommand
{
    public static Command Create()
    {
        var dir = ModelsCommand.DirectoryOption();
        var cmd = new Command("verify", "Re-hash every file recorded in the models directory's manifest.json and report any that changed or went missing");
        cmd.Options.Add(dir);
        cmd.SetAction(parse =>
        {
            try
            {
                var store = new ModelStore(parse.GetValue(dir));
                if (!File.Exists(Path.Combine(store.Root, ModelStore.ManifestFile)))
                    throw new InvalidOperationException($"nothing to verify: no {ModelStore.ManifestFile} in {store.Root} (run `deid models fetch`, or `deid models import`)");
                var results = store.Verify();
                if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = Math.Max(AnsiConsole.Profile.Width, 200);
                var table = new Table().Title($"recorded files in {Markup.Escape(store.Root)}");
                foreach (var h in new[] { "file", "result", "recorded sha256", "source" }) table.AddColumn(h);
                foreach (var r in results)
                    table.AddRow(
                        Markup.Escape(r.RelativePath),
                        r.Result switch { FileCheck.Ok => "[green]ok[/]", FileCheck.Changed => "[red]changed[/]", _ => "[red]missing[/]" },
                        Markup.Escape(r.Recorded.Sha256[..Math.Min(12, r.Recorded.Sha256.Length)]),
                        Markup.Escape(r.Recorded.Source));
                AnsiConsole.Write(table);
                var bad = results.Where(r => r.Result != FileCheck.Ok).ToList();
                if (bad.Count == 0)
                {
                    Console.WriteLine($"all {results.Count} recorded files match their sha256");
                    return 0;
                }
                int changed = bad.Count(r => r.Result == FileCheck.Changed), missing = bad.Count - changed;
                throw new InvalidDataException(
                    $"{bad.Count} of {results.Count} recorded files failed verification ({changed} changed, {missing} missing: " +
                    $"{string.Join(", ", bad.Select(r => r.RelativePath))}); `deid models fetch` restores the ones registries serve, " +
                    "imported ones must be imported again");
            }
            catch (Exception e)
            {
                return CliErrors.Report(e);
            }
        });
        return cmd;
    }
}
