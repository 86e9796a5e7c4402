/** Languages with a built-in kernel and a Pennant route prefix of their own (`/python`, ...). */
export const LANGUAGES = ['python', 'javascript', 'typescript'] as const;
/** A runtime's language name: a built-in one, `java`, `bash`, or `jupyter:<kernelspec>`. */
export type Language = string;
