using System.CommandLine;
using Deid.Models;
using Spectre.Console;

namespace Deid.Cli.Commands;

/// <summary><c>deid models list</c>: every model Deid knows, whether it is present, and how to get the missing ones.</summary>
public static class ModelsListCommand
{
    public static Command Create()
    {
        var dir = ModelsCommand.DirectoryOption();
        var cmd = new Command("list", "List the models Deid uses: role, present/missing, path, size, sha256, and how to get missing ones");
        cmd.Options.Add(dir);
        cmd.SetAction(parse =>
        {
            var store = new ModelStore(parse.GetValue(dir));
            var statuses = store.List();
            // Piped output would otherwise be wrapped at Spectre's 80-column default.
            if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = Math.Max(AnsiConsole.Profile.Width, 200);
            var table = new Table().Title($"models in {Markup.Escape(store.Root)}");
            foreach (var h in new[] { "name", "role", "status", "path", "size", "sha256" }) table.AddColumn(h);
            foreach (var s in statuses)
                table.AddRow(
                    Markup.Escape(s.Entry.Name),
                    Markup.Escape(s.Entry.Role),
                    s.Present ? "[green]present[/]" : "[red]missing[/]",
                    Markup.Escape(Path.GetRelativePath(store.Root, s.Path)),
                    s.Present ? FormatSize(s.Size) : "",
                    s.Sha256 is { } sha ? sha[..12] : s.Present ? "(not recorded)" : "");
            AnsiConsole.Write(table);
            foreach (var s in statuses.Where(s => !s.Present))
            {
                AnsiConsole.MarkupLine($"[yellow]{Markup.Escape(s.Entry.Name)}[/] missing: published as {Markup.Escape(s.Entry.Source)}");
                AnsiConsole.MarkupLine($"    get it with: [bold]{Markup.Escape(s.Entry.HowToGet)}[/]");
            }
            return 0;
        });
        return cmd;
    }

    private static string FormatSize(long bytes) => bytes switch
    {
        >= 1L << 20 => $"{bytes / (double)(1L << 20):0.0} MiB",
        >= 1L << 10 => $"{bytes / 1024.0:0.0} KiB",
        _ => $"{bytes} B",
    };
}
