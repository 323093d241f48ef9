/**
 * A results table's header row: one `<th scope="col">` per column, so every table names its columns the same way
 * for screen readers. A string is a plain column; `num(…)` one of right-aligned numbers (class "num", and any
 * extra classes); `srOnly` a column whose name only screen readers need (an action button's column); `false`
 * leaves a column out.
 */
export interface Column {
  label: string;
  className?: string;
  srOnly?: boolean;
}

export const num = (label: string, extra?: string): Column => ({ label, className: extra ? `num ${extra}` : 'num' });

export function TableHead({ columns }: { columns: ReadonlyArray<string | Column | false> }) {
  return (
    <thead>
      <tr>
        {columns.map((c) => {
          if (c === false) return null;
          const { label, className, srOnly } = typeof c === 'string' ? { label: c } : c;
          return (
            <th key={label} scope="col" className={className}>
              {srOnly ? <span className="sr-only">{label}</span> : label}
            </th>
          );
        })}
      </tr>
    </thead>
  );
}
