using System.CommandLine;
using System.CommandLine.Parsing;
using System.Text.RegularExpressions;

namespace Deid.Cli;

/// <summary>One clear line on stderr and a non-zero exit code instead of a stack trace (DEID_DEBUG=1 shows it).</summary>
public static class CliErrors
{
    public const int Failure = 1;
    public const int UsageError = 2;
    public const int Cancelled = 130;

    /// <summary>
    /// A command line that does not parse: one line naming what is wrong and where the help is, instead of
    /// System.CommandLine's whole help text followed by .NET type names.
    /// </summary>
    public static int Usage(ParseResult parsed)
    {
        var path = new List<string>();
        for (SymbolResult? r = parsed.CommandResult; r != null; r = r.Parent)
            if (r is CommandResult c) path.Insert(0, c.Command.Name);
        if (path.Count > 0) path[0] = "deid";
        var problems = parsed.Errors.Select(e => Friendly(OneLine(e.Message).TrimEnd('.'))).Distinct();
        Console.Error.WriteLine($"deid: error: {string.Join("; ", problems)} (see `{string.Join(" ", path)} --help`)");
        return UsageError;
    }

    /// <summary>"Must be one of:\n\t'a'\n\t'b'" → "Must be one of: 'a', 'b'".</summary>
    private static string OneLine(string message)
    {
        var lines = message.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        return lines.Length <= 1 ? message.Trim() : lines[0] + " " + string.Join(", ", lines[1..]);
    }

    private static string Friendly(string message) =>
        Regex.Replace(message, @"as expected type '([^']*)'", m => m.Groups[1].Value switch
        {
            var t when t.Contains("Int32") || t.Contains("Int64") => "as a whole number",
            var t when t.Contains("Single") || t.Contains("Double") => "as a number",
            var t => $"as {t.Split('.', '[', ']').Where(s => s.Length > 0).LastOrDefault() ?? t}",
        });

    public static int Report(Exception e)
    {
        if (e is AggregateException { InnerExceptions.Count: 1 } agg) e = agg.InnerException!;
        if (e is OperationCanceledException)
        {
            Console.Error.WriteLine("deid: cancelled");
            return Cancelled;
        }
        Console.Error.WriteLine($"deid: error: {e.Message}");
        if (Environment.GetEnvironmentVariable("DEID_DEBUG") == "1") Console.Error.WriteLine(e);
        return Failure;
    }
}
